//! The C API: MCM 25.03's `mesh_dp.h`, every function, type and error code, with the same names
//! and signatures, so an application written for Media Communications Mesh relinks against
//! `libmcm_dp` unchanged. `sdk-c/include/mesh_dp.h` is generated from this file by cbindgen
//! (`sdk-c/cbindgen.toml`); `tests/header.rs` fails when the checked-in header is stale.
//!
//! # Handles
//!
//! Each public struct is the first member of a private `#[repr(C)]` context, so the pointer the
//! application holds is the context's address. Every context carries a magic number at a fixed
//! offset; a NULL pointer, a misaligned one or one whose magic is wrong is refused with the
//! matching `MESH_ERR_BAD_*_PTR` (best effort: a dangling pointer is still undefined behaviour).
//! A deleted context's magic is overwritten before its memory is freed.
//!
//! # Rules every function follows
//!
//! - It returns 0 or a negative code: `-MESH_ERR_*`, `-ENOMEM` when an allocation this module
//!   makes fails (allocations deeper in the SDK abort, as Rust's do), `-EINVAL` for a timeout
//!   below `MESH_TIMEOUT_DEFAULT`, and `-ENOTRECOVERABLE` if the SDK panicked (a bug: the panic is
//!   caught and never unwinds into C).
//! - Outputs (`*mc`, `*conn`, `*buf`) are written only on success.
//! - A failure records a message for [`mcm_last_error`] on the calling thread; a success leaves
//!   the previous message in place.
//!
//! # Choices where MCM leaves the behaviour open
//!
//! - Timeouts are milliseconds; `MESH_TIMEOUT_DEFAULT` (-2) waits the client's
//!   `apiDefaultTimeoutMicroseconds`, `MESH_TIMEOUT_INFINITE` (-1) forever, 0 not at all, and
//!   any value below -2 is `-EINVAL`.
//! - `mesh_put_buffer*` that fails leaves `*buf` and the buffer with the application: it may put
//!   it again (after a timeout) or delete the connection.
//! - `mesh_buffer_set_payload_len` / `_metadata_len` on a receiver's buffer is
//!   `-MESH_ERR_BAD_BUF_PTR`: only a sender's buffer has lengths to set, so the pointer is not a
//!   valid argument (a length error would suggest that a smaller length works).
//! - `mesh_delete_connection` with buffers still out frees their contexts: the `MeshBuffer`
//!   pointers become invalid, and the slots return to the engine with the connection.
//! - `mesh_err2str(0)` is "Success"; `-ENOMEM`, `-EINVAL` and `-ENOTRECOVERABLE` have texts of
//!   their own; any other unknown code is "Unknown error code" (MCM's text).

use std::alloc::Layout;
use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::marker::{PhantomData, PhantomPinned};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mcm_proto::config::{ConnectionConfig, Direction, MeshErr};
use mcm_proto::shm::desc::Descriptor;

use crate::client::Client;
use crate::conn::{Core, Timeout, check_len};
use crate::error::{Error, Result};

/// The MCM SDK API version this library implements, as `MESH_VERSION` says it: major part.
pub const MESH_VERSION_MAJOR: c_int = 25;
/// Minor part of the MCM SDK API version.
pub const MESH_VERSION_MINOR: c_int = 3;
/// Hotfix part of the MCM SDK API version.
pub const MESH_VERSION_HOTFIX: c_int = 0;

/// Timeout: use the client's `apiDefaultTimeoutMicroseconds`.
pub const MESH_TIMEOUT_DEFAULT: c_int = -2;
/// Timeout: no limit, block until success or error.
pub const MESH_TIMEOUT_INFINITE: c_int = -1;
/// Timeout: do not wait (polling).
pub const MESH_TIMEOUT_ZERO: c_int = 0;

/// Error: NULL or invalid client pointer.
pub const MESH_ERR_BAD_CLIENT_PTR: c_int = 1000;
/// Error: NULL or invalid connection pointer.
pub const MESH_ERR_BAD_CONN_PTR: c_int = 1001;
/// Error: NULL configuration pointer.
pub const MESH_ERR_BAD_CONFIG_PTR: c_int = 1002;
/// Error: NULL or invalid buffer pointer.
pub const MESH_ERR_BAD_BUF_PTR: c_int = 1003;
/// Error: payload or metadata length beyond the buffer's size.
pub const MESH_ERR_BAD_BUF_LEN: c_int = 1004;
/// Error: invalid client configuration.
pub const MESH_ERR_CLIENT_CONFIG_INVAL: c_int = 1005;
/// Error: the client reached maxMediaConnections (or an engine limit).
pub const MESH_ERR_MAX_CONN: c_int = 1006;
/// Error: the client still has connections.
pub const MESH_ERR_FOUND_ALLOCATED: c_int = 1007;
/// Error: connecting to the media proxy or creating the connection failed.
pub const MESH_ERR_CONN_FAILED: c_int = 1008;
/// Error: invalid connection configuration.
pub const MESH_ERR_CONN_CONFIG_INVAL: c_int = 1009;
/// Error: connection configuration fields that do not fit together.
pub const MESH_ERR_CONN_CONFIG_INCOMPAT: c_int = 1010;
/// Error: the connection is shut down or closed by the media proxy.
pub const MESH_ERR_CONN_CLOSED: c_int = 1011;
/// Error: the timeout expired.
pub const MESH_ERR_TIMEOUT: c_int = 1012;
/// Error: a feature this implementation does not provide (yet).
pub const MESH_ERR_NOT_IMPLEMENTED: c_int = 1013;

const _: () = {
    let codes = [
        (MESH_ERR_BAD_CLIENT_PTR, MeshErr::BadClientPtr),
        (MESH_ERR_BAD_CONN_PTR, MeshErr::BadConnPtr),
        (MESH_ERR_BAD_CONFIG_PTR, MeshErr::BadConfigPtr),
        (MESH_ERR_BAD_BUF_PTR, MeshErr::BadBufPtr),
        (MESH_ERR_BAD_BUF_LEN, MeshErr::BadBufLen),
        (MESH_ERR_CLIENT_CONFIG_INVAL, MeshErr::ClientConfigInval),
        (MESH_ERR_MAX_CONN, MeshErr::MaxConn),
        (MESH_ERR_FOUND_ALLOCATED, MeshErr::FoundAllocated),
        (MESH_ERR_CONN_FAILED, MeshErr::ConnFailed),
        (MESH_ERR_CONN_CONFIG_INVAL, MeshErr::ConnConfigInval),
        (MESH_ERR_CONN_CONFIG_INCOMPAT, MeshErr::ConnConfigIncompat),
        (MESH_ERR_CONN_CLOSED, MeshErr::ConnClosed),
        (MESH_ERR_TIMEOUT, MeshErr::Timeout),
        (MESH_ERR_NOT_IMPLEMENTED, MeshErr::NotImplemented),
    ];
    let mut i = 0;
    while i < codes.len() {
        assert!(codes[i].0 == codes[i].1.code());
        assert!(codes[i].0 == MeshErr::ALL[i].code());
        i += 1;
    }
};

/// `ENOMEM`: an allocation failed.
const ENOMEM: c_int = rustix::io::Errno::NOMEM.raw_os_error();
/// `EINVAL`: a timeout below `MESH_TIMEOUT_DEFAULT`.
const EINVAL: c_int = rustix::io::Errno::INVAL.raw_os_error();
/// `ENOTRECOVERABLE`: the SDK panicked (a bug).
const ENOTRECOVERABLE: c_int = rustix::io::Errno::NOTRECOVERABLE.raw_os_error();

/// A mesh client: a session with the local media proxy (opaque).
pub struct MeshClient {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// A mesh connection. Applications only read these fields.
#[repr(C)]
#[derive(Debug)]
pub struct MeshConnection {
    /// The client the connection belongs to.
    pub client: *mut MeshClient,
    /// Payload bytes of every buffer: the video frame size, the audio packet size, or
    /// `maxPayloadSize` when it is set.
    pub payload_size: usize,
    /// Metadata bytes of every buffer (`maxMetadataSize`).
    pub metadata_size: usize,
}

/// A buffer lent by a connection. Applications only read these fields; lengths are set with
/// `mesh_buffer_set_payload_len` and `mesh_buffer_set_metadata_len`.
#[repr(C)]
#[derive(Debug)]
pub struct MeshBuffer {
    /// The connection the buffer belongs to.
    pub conn: *mut MeshConnection,
    /// Start of the payload, in shared memory.
    pub payload_ptr: *mut c_void,
    /// Payload bytes: a sender's buffer starts at `payload_size`; a receiver's holds the frame's.
    pub payload_len: usize,
    /// Start of the metadata, in shared memory.
    pub metadata_ptr: *mut c_void,
    /// Metadata bytes: a sender's buffer starts at `metadata_size`; a receiver's holds the
    /// frame's.
    pub metadata_len: usize,
}

// The layout the header declares by hand (cbindgen cannot emit MCM's `const` members): checked
// here, and from the C side by the static assertions of tests/c/api_test.c.
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(size_of::<usize>() == 8);
    assert!(offset_of!(MeshConnection, client) == 0);
    assert!(offset_of!(MeshConnection, payload_size) == 8);
    assert!(offset_of!(MeshConnection, metadata_size) == 16);
    assert!(size_of::<MeshConnection>() == 24);
    assert!(offset_of!(MeshBuffer, conn) == 0);
    assert!(offset_of!(MeshBuffer, payload_ptr) == 8);
    assert!(offset_of!(MeshBuffer, payload_len) == 16);
    assert!(offset_of!(MeshBuffer, metadata_ptr) == 24);
    assert!(offset_of!(MeshBuffer, metadata_len) == 32);
    assert!(size_of::<MeshBuffer>() == 40);
};

const CLIENT_MAGIC: u64 = u64::from_le_bytes(*b"mcmCLNT\x01");
const CONN_MAGIC: u64 = u64::from_le_bytes(*b"mcmCONN\x01");
const BUF_MAGIC: u64 = u64::from_le_bytes(*b"mcmBUFR\x01");
const DEAD_MAGIC: u64 = u64::from_le_bytes(*b"mcmDEAD\x00");

/// What a `MeshClient *` points to.
#[repr(C)]
struct ClientCtx {
    magic: u64,
    client: Client,
    /// Initialised padding up to the largest magic offset of the other contexts (40), so that
    /// a client passed where a connection or a buffer is expected is refused by its magic
    /// without reading past the allocation.
    _pad: [u64; 4],
}

/// What a `MeshConnection *` points to.
#[repr(C)]
struct ConnCtx {
    public: MeshConnection,
    magic: u64,
    core: Arc<Core>,
    /// The engine's connection id; also keeps the bytes at offset 40 (where a buffer's magic
    /// is) initialised.
    id: u64,
    bufs: Mutex<Bufs>,
}

/// What a `MeshBuffer *` points to.
#[repr(C)]
struct BufCtx {
    public: MeshBuffer,
    magic: u64,
    conn: NonNull<ConnCtx>,
    desc: Descriptor,
    /// Lent to the application (between a get and a successful put).
    lent: bool,
}

/// A connection's buffer contexts: every one it allocated, and those not lent now. `free` has
/// room for all of them, so a put never allocates; a get allocates only when the application
/// holds more buffers than ever before (the first `bufferQueueCapacity` are preallocated).
struct Bufs {
    all: Vec<NonNull<BufCtx>>,
    free: Vec<NonNull<BufCtx>>,
}

impl Bufs {
    /// Allocates one more context for connection `conn` and adds it to the free list.
    fn grow(&mut self, conn: NonNull<ConnCtx>) -> Result<()> {
        self.all.try_reserve(1).map_err(|_| oom("a buffer list"))?;
        let want = self.all.len() + 1;
        self.free
            .try_reserve(want.saturating_sub(self.free.len()))
            .map_err(|_| oom("a buffer list"))?;
        let ctx = try_box(BufCtx {
            public: MeshBuffer {
                conn: conn.as_ptr().cast(),
                payload_ptr: ptr::null_mut(),
                payload_len: 0,
                metadata_ptr: ptr::null_mut(),
                metadata_len: 0,
            },
            magic: BUF_MAGIC,
            conn,
            desc: Descriptor::default(),
            lent: false,
        })?;
        self.all.push(ctx);
        self.free.push(ctx);
        Ok(())
    }
}

impl Drop for Bufs {
    fn drop(&mut self) {
        for p in self.all.drain(..) {
            // SAFETY: every pointer in `all` came from `try_box` in `grow` and is freed only
            // here, once; the application's copies are invalid from now on (documented on
            // mesh_delete_connection).
            unsafe {
                (*p.as_ptr()).magic = DEAD_MAGIC;
                free_box(p);
            }
        }
    }
}

/// Moves `value` to the heap; `-ENOMEM` instead of aborting when the allocation fails.
fn try_box<T>(value: T) -> Result<NonNull<T>> {
    let layout = Layout::new::<T>();
    assert!(layout.size() > 0, "contexts are never zero-sized");
    // SAFETY: the layout is not zero-sized (checked above).
    let p = unsafe { std::alloc::alloc(layout) }.cast::<T>();
    let p = NonNull::new(p).ok_or_else(|| oom(std::any::type_name::<T>()))?;
    // SAFETY: `p` is a fresh allocation of T's layout: valid for a write of one T.
    unsafe { p.as_ptr().write(value) };
    Ok(p)
}

/// Drops and frees what [`try_box`] allocated.
///
/// # Safety
///
/// `p` came from `try_box::<T>` and is not used afterwards.
unsafe fn free_box<T>(p: NonNull<T>) {
    // SAFETY: try_box allocated with the global allocator and `Layout::new::<T>()`, which is
    // what Box uses for a T; the caller gives up `p`.
    drop(unsafe { Box::from_raw(p.as_ptr()) });
}

fn oom(what: &str) -> Error {
    Error::os(ENOMEM, format!("out of memory allocating {what}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The lists are consistent after every statement that touches them; a panic elsewhere
    // while the lock was held leaves nothing half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether `p` is non-null and aligned for `T`, and its magic at `offset` is `magic`.
///
/// # Safety
///
/// A non-null, aligned `p` must point to at least `offset + 8` readable, initialised bytes
/// (true of every context of this module; a pointer from anywhere else is the application's
/// undefined behaviour, which this check catches only on a best-effort basis).
unsafe fn has_magic<T>(p: *const T, offset: usize, magic: u64) -> bool {
    if p.is_null() || !p.cast::<u64>().is_aligned() {
        return false;
    }
    // SAFETY: per the contract above; `offset` is a multiple of 8 (checked by the callers'
    // offset_of) and `p` is 8-aligned, so the read is aligned.
    unsafe { p.cast::<u8>().add(offset).cast::<u64>().read() == magic }
}

/// The client context behind `mc`.
///
/// # Safety
///
/// `mc` is NULL or a pointer this module handed out (or see [`has_magic`]).
unsafe fn client_ctx<'a>(mc: *mut MeshClient) -> Result<&'a ClientCtx> {
    let p = mc.cast::<ClientCtx>();
    if mc.is_null() {
        return Err(Error::mesh(
            MeshErr::BadClientPtr,
            "the client pointer is NULL",
        ));
    }
    // SAFETY: forwarded contract.
    if !unsafe { has_magic(p, std::mem::offset_of!(ClientCtx, magic), CLIENT_MAGIC) } {
        return Err(Error::mesh(
            MeshErr::BadClientPtr,
            format!("{mc:p} is not a mesh client (deleted, or not from mesh_create_client)"),
        ));
    }
    // SAFETY: the magic says this is a live ClientCtx; it is only freed by mesh_delete_client,
    // which the application must not call concurrently with a use of the client.
    Ok(unsafe { &*p })
}

/// The connection context behind `conn`.
///
/// # Safety
///
/// `conn` is NULL or a pointer this module handed out (or see [`has_magic`]).
unsafe fn conn_ctx<'a>(conn: *mut MeshConnection) -> Result<&'a ConnCtx> {
    let p = conn.cast::<ConnCtx>();
    if conn.is_null() {
        return Err(Error::mesh(
            MeshErr::BadConnPtr,
            "the connection pointer is NULL",
        ));
    }
    // SAFETY: forwarded contract.
    if !unsafe { has_magic(p, std::mem::offset_of!(ConnCtx, magic), CONN_MAGIC) } {
        return Err(Error::mesh(
            MeshErr::BadConnPtr,
            format!(
                "{conn:p} is not a mesh connection (deleted, or not from \
                 mesh_create_tx_connection/mesh_create_rx_connection)"
            ),
        ));
    }
    // SAFETY: the magic says this is a live ConnCtx; only mesh_delete_connection frees it, and
    // the application must not call it concurrently with a use of the connection.
    Ok(unsafe { &*p })
}

/// The buffer context behind `buf`, which must be lent to the application now.
///
/// # Safety
///
/// `buf` is NULL or a pointer this module handed out (or see [`has_magic`]).
unsafe fn lent_buf(buf: *mut MeshBuffer) -> Result<NonNull<BufCtx>> {
    let Some(p) = NonNull::new(buf.cast::<BufCtx>()) else {
        return Err(Error::mesh(
            MeshErr::BadBufPtr,
            "the buffer pointer is NULL",
        ));
    };
    // SAFETY: forwarded contract.
    if !unsafe { has_magic(p.as_ptr(), std::mem::offset_of!(BufCtx, magic), BUF_MAGIC) } {
        return Err(Error::mesh(
            MeshErr::BadBufPtr,
            format!(
                "{buf:p} is not a mesh buffer (its connection was deleted, or not from mesh_get_buffer)"
            ),
        ));
    }
    // SAFETY: the magic says this is a live BufCtx; `lent` is written only by the thread that
    // owns the buffer (get and put), under the ordering of the connection's buffer lock.
    if !unsafe { (*p.as_ptr()).lent } {
        return Err(Error::mesh(
            MeshErr::BadBufPtr,
            format!("buffer {buf:p} is not lent to the application (already put?)"),
        ));
    }
    Ok(p)
}

/// The C string `s` as UTF-8; invalid UTF-8 is an error of class `class`.
///
/// # Safety
///
/// `s` is a valid NUL-terminated string.
unsafe fn c_str<'a>(s: *const c_char, class: MeshErr) -> Result<&'a str> {
    // SAFETY: per the contract.
    let bytes = unsafe { CStr::from_ptr(s) };
    bytes.to_str().map_err(|e| {
        Error::mesh(
            class,
            format!(
                "the configuration is not valid UTF-8 (at byte {})",
                e.valid_up_to()
            ),
        )
    })
}

/// The wait `timeout_ms` asks for.
fn timeout(timeout_ms: c_int) -> Result<Timeout> {
    match timeout_ms {
        MESH_TIMEOUT_DEFAULT => Ok(Timeout::Default),
        MESH_TIMEOUT_INFINITE => Ok(Timeout::Infinite),
        // Non-negative: the cast is lossless.
        ms if ms >= 0 => Ok(Timeout::After(Duration::from_millis(ms as u64))),
        ms => Err(Error::os(
            EINVAL,
            format!(
                "timeout_ms {ms} is not allowed (allowed: MESH_TIMEOUT_DEFAULT = -2, \
                 MESH_TIMEOUT_INFINITE = -1, or 0 and above, in milliseconds)"
            ),
        )),
    }
}

thread_local! {
    /// The message of the last failed call on this thread, NUL-terminated (empty: none yet).
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Records `func: message` as this thread's last error (reusing the buffer's capacity).
fn set_last_error(func: &str, message: &str) {
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut buf) = cell.try_borrow_mut() {
            buf.clear();
            let text = [func.as_bytes(), b": ", message.as_bytes()];
            // Interior NULs would cut the C string short: drop them.
            buf.extend(text.iter().flat_map(|t| t.iter()).filter(|&&b| b != 0));
            buf.push(0);
        }
    });
}

/// Runs `body`, turning its error or panic into a negative code (and the thread's last error).
fn guard(func: &'static str, body: impl FnOnce() -> Result<()>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            set_last_error(func, e.message());
            e.code()
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            set_last_error(func, &format!("internal error, the SDK panicked: {what}"));
            -ENOTRECOVERABLE
        }
    }
}

/// Creates a mesh client: a session with the local media proxy.
///
/// `cfg` is the client JSON (`apiVersion`, `apiConnectionString`,
/// `apiDefaultTimeoutMicroseconds`, `maxMediaConnections`); NULL or empty means all defaults.
/// Without `apiConnectionString` the proxy address comes from the environment variables
/// `MCM_MEDIA_PROXY_IP` / `MCM_MEDIA_PROXY_PORT`, else 127.0.0.1:8002.
///
/// Returns 0 and sets `*mc`, or -MESH_ERR_BAD_CLIENT_PTR (`mc` NULL),
/// -MESH_ERR_CLIENT_CONFIG_INVAL (malformed JSON, a field of the wrong type or out of range,
/// invalid UTF-8), -MESH_ERR_CONN_FAILED (the proxy cannot be reached), -ENOMEM.
///
/// # Safety
///
/// `mc` is NULL or valid for writing a pointer; `cfg` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_create_client(mc: *mut *mut MeshClient, cfg: *const c_char) -> c_int {
    guard("mesh_create_client", || {
        if mc.is_null() {
            return Err(Error::mesh(MeshErr::BadClientPtr, "mc is NULL"));
        }
        let json = if cfg.is_null() {
            None
        } else {
            // SAFETY: the caller passes a NUL-terminated string.
            Some(unsafe { c_str(cfg, MeshErr::ClientConfigInval) }?)
        };
        let client = Client::new(json)?;
        let ctx = try_box(ClientCtx {
            magic: CLIENT_MAGIC,
            client,
            _pad: [0; 4],
        })?;
        // SAFETY: `mc` is non-null and valid for a write (caller's contract).
        unsafe { mc.write(ctx.as_ptr().cast()) };
        Ok(())
    })
}

/// Deletes a mesh client and sets `*mc` to NULL.
///
/// Returns 0, or -MESH_ERR_BAD_CLIENT_PTR (`mc` or `*mc` NULL or not a client),
/// -MESH_ERR_FOUND_ALLOCATED (the client still has connections: delete them first; the client
/// stays valid).
///
/// # Safety
///
/// `mc` is NULL or valid for reading and writing a pointer; `*mc` is NULL or a client from
/// `mesh_create_client` not used by another thread during the call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_delete_client(mc: *mut *mut MeshClient) -> c_int {
    guard("mesh_delete_client", || {
        if mc.is_null() {
            return Err(Error::mesh(MeshErr::BadClientPtr, "mc is NULL"));
        }
        // SAFETY: `mc` is non-null and valid for a read (caller's contract).
        let p = unsafe { mc.read() };
        // SAFETY: `*mc` is NULL or a client pointer (caller's contract).
        let ctx = unsafe { client_ctx(p) }?;
        let open = ctx.client.connection_count();
        if open > 0 {
            return Err(Error::mesh(
                MeshErr::FoundAllocated,
                format!("the client still has {open} connection(s); delete them first"),
            ));
        }
        let p = p.cast::<ClientCtx>();
        // SAFETY: `p` is a live ClientCtx from try_box (magic checked), owned by the caller and
        // not in use elsewhere (contract); marked dead, then freed once; `mc` is writable.
        unsafe {
            (*p).magic = DEAD_MAGIC;
            free_box(NonNull::new_unchecked(p));
            mc.write(ptr::null_mut());
        }
        Ok(())
    })
}

/// Creates a connection of `dir` for `mesh_create_tx_connection` / `_rx_`.
///
/// # Safety
///
/// As for those functions.
unsafe fn create_connection(
    func: &'static str,
    mc: *mut MeshClient,
    conn: *mut *mut MeshConnection,
    cfg: *const c_char,
    dir: Direction,
) -> c_int {
    guard(func, || {
        // SAFETY: `mc` is NULL or a client pointer (caller's contract).
        let client = unsafe { client_ctx(mc) }?;
        if conn.is_null() {
            return Err(Error::mesh(MeshErr::BadConnPtr, "conn is NULL"));
        }
        if cfg.is_null() {
            return Err(Error::mesh(MeshErr::BadConfigPtr, "cfg is NULL"));
        }
        // SAFETY: `cfg` is a NUL-terminated string (caller's contract).
        let json = unsafe { c_str(cfg, MeshErr::ConnConfigInval) }?;
        let parsed = ConnectionConfig::from_json(json, dir)?;
        let capacity = parsed.buffer_queue_capacity() as usize;
        let core = Core::create(client.client.shared(), json, parsed)?;
        match new_conn_ctx(mc, &core, capacity) {
            Ok(ctx) => {
                // SAFETY: `conn` is non-null and valid for a write (caller's contract).
                unsafe { conn.write(ctx.as_ptr().cast()) };
                Ok(())
            }
            Err(e) => {
                core.delete();
                Err(e)
            }
        }
    })
}

/// Allocates a connection context with `capacity` buffer contexts.
fn new_conn_ctx(
    mc: *mut MeshClient,
    core: &Arc<Core>,
    capacity: usize,
) -> Result<NonNull<ConnCtx>> {
    let mut bufs = Bufs {
        all: Vec::new(),
        free: Vec::new(),
    };
    bufs.all
        .try_reserve_exact(capacity)
        .and_then(|()| bufs.free.try_reserve_exact(capacity))
        .map_err(|_| oom("a buffer list"))?;
    let ctx = try_box(ConnCtx {
        public: MeshConnection {
            client: mc,
            payload_size: core.payload_size(),
            metadata_size: core.metadata_size(),
        },
        magic: CONN_MAGIC,
        core: core.clone(),
        id: core.id(),
        bufs: Mutex::new(bufs),
    })?;
    for _ in 0..capacity {
        // SAFETY: `ctx` is the live context just allocated; nothing else refers to it yet.
        let grown = lock(unsafe { &ctx.as_ref().bufs }).grow(ctx);
        if let Err(e) = grown {
            // SAFETY: as above; freed once, never handed out.
            unsafe { free_box(ctx) };
            return Err(e);
        }
    }
    Ok(ctx)
}

/// Creates a sender connection (the source of its group) from the connection JSON `cfg`.
///
/// Returns 0 and sets `*conn`, or -MESH_ERR_BAD_CLIENT_PTR, -MESH_ERR_BAD_CONN_PTR (`conn`
/// NULL), -MESH_ERR_BAD_CONFIG_PTR (`cfg` NULL), -MESH_ERR_CONN_CONFIG_INVAL (malformed JSON, a
/// field of the wrong type or out of range, invalid UTF-8), -MESH_ERR_CONN_CONFIG_INCOMPAT
/// (fields that do not fit together, or a group that carries other sizes or already has a
/// sender), -MESH_ERR_MAX_CONN, -MESH_ERR_NOT_IMPLEMENTED (a transport the media proxy does not
/// serve), -MESH_ERR_CONN_FAILED, -ENOMEM.
///
/// # Safety
///
/// `mc` is NULL or a client from `mesh_create_client`; `conn` is NULL or valid for writing a
/// pointer; `cfg` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_create_tx_connection(
    mc: *mut MeshClient,
    conn: *mut *mut MeshConnection,
    cfg: *const c_char,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { create_connection("mesh_create_tx_connection", mc, conn, cfg, Direction::Tx) }
}

/// Creates a receiver connection (a sink of its group) from the connection JSON `cfg`.
///
/// Returns as `mesh_create_tx_connection` does.
///
/// # Safety
///
/// As for `mesh_create_tx_connection`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_create_rx_connection(
    mc: *mut MeshClient,
    conn: *mut *mut MeshConnection,
    cfg: *const c_char,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { create_connection("mesh_create_rx_connection", mc, conn, cfg, Direction::Rx) }
}

/// Shuts a connection down: gets blocked in other threads, and all later gets and sender puts,
/// return -MESH_ERR_CONN_CLOSED. Safe to call from another thread while one is blocked in a
/// get, and more than once. The connection must still be deleted.
///
/// Returns 0 or -MESH_ERR_BAD_CONN_PTR.
///
/// # Safety
///
/// `conn` is NULL or a connection not being deleted concurrently.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_shutdown_connection(conn: *mut MeshConnection) -> c_int {
    guard("mesh_shutdown_connection", || {
        // SAFETY: forwarded contract.
        let ctx = unsafe { conn_ctx(conn) }?;
        ctx.core.shutdown();
        Ok(())
    })
}

/// Shuts down and deletes a connection, and sets `*conn` to NULL.
///
/// Buffers of the connection still held by the application become invalid (their memory is
/// freed and unmapped; the slots return to the media proxy). No other thread may use the
/// connection or its buffers during or after the call: shut it down and join them first.
///
/// Returns 0 or -MESH_ERR_BAD_CONN_PTR (`conn` or `*conn` NULL or not a connection).
///
/// # Safety
///
/// `conn` is NULL or valid for reading and writing a pointer; `*conn` is NULL or a connection
/// no other thread uses.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_delete_connection(conn: *mut *mut MeshConnection) -> c_int {
    guard("mesh_delete_connection", || {
        if conn.is_null() {
            return Err(Error::mesh(MeshErr::BadConnPtr, "conn is NULL"));
        }
        // SAFETY: `conn` is non-null and readable (caller's contract).
        let p = unsafe { conn.read() };
        // SAFETY: `*conn` is NULL or a connection pointer (caller's contract).
        let ctx = unsafe { conn_ctx(p) }?;
        ctx.core.delete();
        let p = p.cast::<ConnCtx>();
        // SAFETY: a live ConnCtx from try_box (magic checked) that no other thread uses
        // (contract): marked dead and freed once (which frees its buffer contexts); `conn` is
        // writable.
        unsafe {
            (*p).magic = DEAD_MAGIC;
            free_box(NonNull::new_unchecked(p));
            conn.write(ptr::null_mut());
        }
        Ok(())
    })
}

/// Gets a buffer, waiting up to the client's default timeout: see `mesh_get_buffer_timeout`.
///
/// # Safety
///
/// As for `mesh_get_buffer_timeout`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_get_buffer(
    conn: *mut MeshConnection,
    buf: *mut *mut MeshBuffer,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { get_buffer("mesh_get_buffer", conn, buf, MESH_TIMEOUT_DEFAULT) }
}

/// Gets a buffer: a free one to fill (sender; `payload_len` and `metadata_len` preset to the
/// sizes) or the next frame (receiver). Waits `timeout_ms` milliseconds at most
/// (`MESH_TIMEOUT_DEFAULT`: the client's `apiDefaultTimeoutMicroseconds`;
/// `MESH_TIMEOUT_INFINITE`: no limit; `MESH_TIMEOUT_ZERO`: do not wait). A sender may hold
/// several buffers at once.
///
/// Returns 0 and sets `*buf`, or -MESH_ERR_BAD_CONN_PTR, -MESH_ERR_BAD_BUF_PTR (`buf` NULL),
/// -EINVAL (`timeout_ms` below -2), -MESH_ERR_TIMEOUT, -MESH_ERR_CONN_CLOSED (shut down, or the
/// media proxy closed it), -ENOMEM.
///
/// # Safety
///
/// `conn` is NULL or a connection not being deleted concurrently; `buf` is NULL or valid for
/// writing a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_get_buffer_timeout(
    conn: *mut MeshConnection,
    buf: *mut *mut MeshBuffer,
    timeout_ms: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { get_buffer("mesh_get_buffer_timeout", conn, buf, timeout_ms) }
}

/// # Safety
///
/// As for `mesh_get_buffer_timeout`.
unsafe fn get_buffer(
    func: &'static str,
    conn: *mut MeshConnection,
    buf: *mut *mut MeshBuffer,
    timeout_ms: c_int,
) -> c_int {
    guard(func, || {
        // SAFETY: forwarded contract.
        let ctx = unsafe { conn_ctx(conn) }?;
        if buf.is_null() {
            return Err(Error::mesh(MeshErr::BadBufPtr, "buf is NULL"));
        }
        let wait = timeout(timeout_ms)?;
        // Non-null: conn_ctx checked it. Derived from the application's pointer (the
        // context's own allocation), not from the shared reference.
        let conn_ptr = NonNull::new(conn.cast::<ConnCtx>()).expect("checked by conn_ctx");
        let b = {
            let mut bufs = lock(&ctx.bufs);
            if bufs.free.is_empty() {
                bufs.grow(conn_ptr)?;
            }
            bufs.free.pop().expect("grow added one")
        };
        let raw = match ctx.core.get(wait) {
            Ok(raw) => raw,
            Err(e) => {
                // Fits: `free` has room for every context.
                lock(&ctx.bufs).free.push(b);
                return Err(e);
            }
        };
        let tx = ctx.core.is_tx();
        let p = b.as_ptr();
        // SAFETY: `b` is a live context of this connection just taken off the free list, so
        // no one else refers to it; `buf` is writable (caller's contract).
        unsafe {
            (*p).public.payload_ptr = raw.payload.as_ptr().cast();
            (*p).public.payload_len = raw.desc.payload_len as usize;
            (*p).public.metadata_ptr = raw.metadata.as_ptr().cast();
            (*p).public.metadata_len = raw.desc.metadata_len as usize;
            (*p).desc = raw.desc;
            if tx {
                // The engine numbers and stamps a frame when it is published.
                (*p).desc.seq = 0;
                (*p).desc.timestamp_ns = 0;
            }
            (*p).lent = true;
            buf.write(ptr::addr_of_mut!((*p).public));
        }
        Ok(())
    })
}

/// Puts a buffer back, waiting up to the client's default timeout: see
/// `mesh_put_buffer_timeout`.
///
/// # Safety
///
/// As for `mesh_put_buffer_timeout`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_put_buffer(buf: *mut *mut MeshBuffer) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { put_buffer("mesh_put_buffer", buf, MESH_TIMEOUT_DEFAULT) }
}

/// Puts a buffer back: a sender's is published (its first `payload_len` and `metadata_len`
/// bytes), a receiver's is released. On success sets `*buf` to NULL. On failure `*buf` is left
/// as it was and the buffer still belongs to the application: put it again (after a timeout),
/// or delete the connection.
///
/// Returns 0, or -MESH_ERR_BAD_BUF_PTR (`buf` or `*buf` NULL, not a buffer, or already put),
/// -MESH_ERR_BAD_CONN_PTR (its connection was deleted), -EINVAL (`timeout_ms` below -2),
/// -MESH_ERR_TIMEOUT, -MESH_ERR_CONN_CLOSED (a sender's connection was shut down).
///
/// # Safety
///
/// `buf` is NULL or valid for reading and writing a pointer; `*buf` is NULL or a buffer from
/// `mesh_get_buffer*` whose connection was not deleted, not used by another thread meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_put_buffer_timeout(
    buf: *mut *mut MeshBuffer,
    timeout_ms: c_int,
) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { put_buffer("mesh_put_buffer_timeout", buf, timeout_ms) }
}

/// # Safety
///
/// As for `mesh_put_buffer_timeout`.
unsafe fn put_buffer(func: &'static str, buf: *mut *mut MeshBuffer, timeout_ms: c_int) -> c_int {
    guard(func, || {
        if buf.is_null() {
            return Err(Error::mesh(MeshErr::BadBufPtr, "buf is NULL"));
        }
        // SAFETY: `buf` is non-null and readable (caller's contract).
        let b = unsafe { lent_buf(buf.read()) }?;
        // SAFETY: a live, lent context (checked): its connection pointer is set at creation.
        let conn = unsafe { (*b.as_ptr()).conn };
        // SAFETY: the buffer's connection context outlives its buffer contexts (it frees them).
        let ctx = unsafe { conn_ctx(conn.as_ptr().cast()) }?;
        let wait = timeout(timeout_ms)?;
        // SAFETY: the application owns the lent buffer; only this thread touches it now.
        let desc = unsafe { (*b.as_ptr()).desc };
        ctx.core.try_put(desc, wait)?;
        // SAFETY: as above; the buffer goes back to the free list after this write.
        unsafe { (*b.as_ptr()).lent = false };
        // Fits: `free` has room for every context.
        lock(&ctx.bufs).free.push(b);
        // SAFETY: `buf` is writable (caller's contract).
        unsafe { buf.write(ptr::null_mut()) };
        Ok(())
    })
}

/// Sets how many payload bytes of a sender's buffer are published.
///
/// Returns 0, or -MESH_ERR_BAD_BUF_PTR (NULL, not a lent buffer, or a receiver's buffer: its
/// lengths are the frame's), -MESH_ERR_BAD_BUF_LEN (`len` above the connection's
/// `payload_size`; the length is unchanged).
///
/// # Safety
///
/// `buf` is NULL or a buffer from `mesh_get_buffer*` not yet put, not used by another thread
/// meanwhile.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_buffer_set_payload_len(buf: *mut MeshBuffer, len: usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { set_len("mesh_buffer_set_payload_len", buf, len, Part::Payload) }
}

/// Sets how many metadata bytes of a sender's buffer are published.
///
/// Returns as `mesh_buffer_set_payload_len` does, against `metadata_size`.
///
/// # Safety
///
/// As for `mesh_buffer_set_payload_len`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mesh_buffer_set_metadata_len(buf: *mut MeshBuffer, len: usize) -> c_int {
    // SAFETY: forwarded contract.
    unsafe { set_len("mesh_buffer_set_metadata_len", buf, len, Part::Metadata) }
}

#[derive(Clone, Copy)]
enum Part {
    Payload,
    Metadata,
}

/// # Safety
///
/// As for `mesh_buffer_set_payload_len`.
unsafe fn set_len(func: &'static str, buf: *mut MeshBuffer, len: usize, part: Part) -> c_int {
    guard(func, || {
        // SAFETY: forwarded contract.
        let b = unsafe { lent_buf(buf) }?;
        // SAFETY: a live, lent context (checked).
        let conn = unsafe { (*b.as_ptr()).conn };
        // SAFETY: the buffer's connection context outlives its buffer contexts.
        let ctx = unsafe { conn_ctx(conn.as_ptr().cast()) }?;
        if !ctx.core.is_tx() {
            return Err(Error::mesh(
                MeshErr::BadBufPtr,
                "the buffer belongs to a receiver: its lengths are the frame's and cannot be set",
            ));
        }
        let p = b.as_ptr();
        // SAFETY: the application owns the lent buffer; only this thread touches it now.
        unsafe {
            match part {
                Part::Payload => {
                    let n = check_len(len, ctx.core.payload_size(), "payload")?;
                    (*p).desc.payload_len = n;
                    (*p).public.payload_len = len;
                }
                Part::Metadata => {
                    let n = check_len(len, ctx.core.metadata_size(), "metadata")?;
                    (*p).desc.metadata_len = n;
                    (*p).public.metadata_len = len;
                }
            }
        }
        Ok(())
    })
}

/// The text of an MCM error code, given negative (as returned) or positive; 0 is "Success";
/// `ENOMEM`, `EINVAL` and `ENOTRECOVERABLE` (either sign) have texts of their own; any other
/// value gives "Unknown error code". The string is static: never free it.
#[unsafe(no_mangle)]
pub extern "C" fn mesh_err2str(err: c_int) -> *const c_char {
    catch_unwind(|| err_text(err))
        .unwrap_or(c"Unknown error code")
        .as_ptr()
}

/// The C string `mesh_err2str` returns for `err`.
fn err_text(err: c_int) -> &'static CStr {
    if let Some(e) = MeshErr::from_code(err) {
        return mesh_err_text(e);
    }
    match err.checked_abs() {
        Some(0) => c"Success",
        Some(ENOMEM) => c"Out of memory",
        Some(EINVAL) => c"Invalid argument",
        Some(ENOTRECOVERABLE) => c"Internal error in the SDK (see mcm_last_error)",
        _ => c"Unknown error code",
    }
}

/// `MeshErr::as_str` as a C string (equality checked by a unit test).
fn mesh_err_text(e: MeshErr) -> &'static CStr {
    match e {
        MeshErr::BadClientPtr => c"Bad client pointer",
        MeshErr::BadConnPtr => c"Bad connection pointer",
        MeshErr::BadConfigPtr => c"Bad configuration pointer",
        MeshErr::BadBufPtr => c"Bad buffer pointer",
        MeshErr::BadBufLen => c"Bad buffer length",
        MeshErr::ClientConfigInval => c"Invalid parameters in client configuration",
        MeshErr::MaxConn => c"Reached max number of connections",
        MeshErr::FoundAllocated => c"Found allocated resources",
        MeshErr::ConnFailed => c"Connection creation failed",
        MeshErr::ConnConfigInval => c"Invalid parameters in connection configuration",
        MeshErr::ConnConfigIncompat => c"Incompatible parameters in connection configuration",
        MeshErr::ConnClosed => c"Connection is closed",
        MeshErr::Timeout => c"Timeout occurred",
        MeshErr::NotImplemented => c"Feature not implemented yet",
    }
}

/// Extension (not in MCM): the group's sequence number of a receiver's frame (0 for the first
/// frame of the group, +1 per frame the sender published). 0 for a sender's buffer (numbered
/// when published), for NULL and for anything that is not a lent buffer.
///
/// # Safety
///
/// `buf` is NULL or a buffer from `mesh_get_buffer*` whose connection was not deleted.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcm_buffer_seq(buf: *const MeshBuffer) -> u64 {
    // SAFETY: forwarded contract.
    unsafe { buf_desc(buf) }.map_or(0, |d| d.seq)
}

/// Extension (not in MCM): the capture timestamp of a receiver's frame, in nanoseconds since
/// the Unix epoch (CLOCK_REALTIME; stamped by the sender's put). 0 for a sender's buffer, for
/// NULL and for anything that is not a lent buffer.
///
/// # Safety
///
/// As for `mcm_buffer_seq`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mcm_buffer_timestamp_ns(buf: *const MeshBuffer) -> u64 {
    // SAFETY: forwarded contract.
    unsafe { buf_desc(buf) }.map_or(0, |d| d.timestamp_ns)
}

/// The descriptor of the lent buffer `buf`, if it is one; never panics into C.
///
/// # Safety
///
/// As for `mcm_buffer_seq`.
unsafe fn buf_desc(buf: *const MeshBuffer) -> Option<Descriptor> {
    catch_unwind(|| {
        // SAFETY: forwarded contract.
        let b = unsafe { lent_buf(buf.cast_mut()) }.ok()?;
        // SAFETY: a live, lent context (checked), read by the thread that owns it.
        Some(unsafe { (*b.as_ptr()).desc })
    })
    .ok()
    .flatten()
}

/// Extension (not in MCM): the message of the last failed `mesh_*` call on this thread, e.g.
/// `mesh_create_tx_connection: payload.video.width: expected an unsigned integer, got string
/// "640"`; an empty string if none failed yet. Valid until the next call into the library on
/// this thread; never free it.
#[unsafe(no_mangle)]
pub extern "C" fn mcm_last_error() -> *const c_char {
    catch_unwind(|| {
        LAST_ERROR
            .try_with(|cell| match cell.try_borrow() {
                Ok(buf) if !buf.is_empty() => buf.as_ptr().cast::<c_char>(),
                _ => c"".as_ptr(),
            })
            .unwrap_or(c"".as_ptr())
    })
    .unwrap_or(c"".as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err2str_texts_are_mcm_s_in_both_signs() {
        for e in MeshErr::ALL {
            for code in [e.code(), -e.code()] {
                // SAFETY: mesh_err2str returns a static NUL-terminated string.
                let s = unsafe { CStr::from_ptr(mesh_err2str(code)) };
                assert_eq!(s.to_str().unwrap(), e.as_str());
            }
        }
        for code in [999, 1014, -999, -1014, i32::MIN, i32::MAX, 1, -1] {
            // SAFETY: as above.
            let s = unsafe { CStr::from_ptr(mesh_err2str(code)) };
            assert_eq!(s, c"Unknown error code", "{code}");
        }
        // SAFETY: as above.
        let s = unsafe { CStr::from_ptr(mesh_err2str(-ENOMEM)) };
        assert_eq!(s, c"Out of memory");
        // SAFETY: as above.
        let s = unsafe { CStr::from_ptr(mesh_err2str(0)) };
        assert_eq!(s, c"Success");
    }

    #[test]
    fn timeouts_map_to_waits() {
        assert_eq!(timeout(-2).unwrap(), Timeout::Default);
        assert_eq!(timeout(-1).unwrap(), Timeout::Infinite);
        assert_eq!(timeout(0).unwrap(), Timeout::After(Duration::ZERO));
        assert_eq!(
            timeout(i32::MAX).unwrap(),
            Timeout::After(Duration::from_millis(i32::MAX as u64))
        );
        for bad in [-3, i32::MIN] {
            assert_eq!(timeout(bad).unwrap_err().code(), -EINVAL);
        }
    }

    #[test]
    fn null_pointers_are_refused_with_the_matching_code() {
        let mut mc: *mut MeshClient = ptr::null_mut();
        let mut conn: *mut MeshConnection = ptr::null_mut();
        let mut buf: *mut MeshBuffer = ptr::null_mut();
        // SAFETY: every pointer is NULL or a valid local.
        unsafe {
            assert_eq!(mesh_create_client(ptr::null_mut(), ptr::null()), -1000);
            assert_eq!(mesh_delete_client(ptr::null_mut()), -1000);
            assert_eq!(mesh_delete_client(&mut mc), -1000);
            let cfg = c"{}".as_ptr();
            assert_eq!(mesh_create_tx_connection(mc, &mut conn, cfg), -1000);
            assert_eq!(mesh_create_rx_connection(mc, &mut conn, cfg), -1000);
            assert_eq!(mesh_shutdown_connection(conn), -1001);
            assert_eq!(mesh_delete_connection(ptr::null_mut()), -1001);
            assert_eq!(mesh_delete_connection(&mut conn), -1001);
            assert_eq!(mesh_get_buffer(conn, &mut buf), -1001);
            assert_eq!(mesh_get_buffer_timeout(conn, &mut buf, 0), -1001);
            assert_eq!(mesh_put_buffer(ptr::null_mut()), -1003);
            assert_eq!(mesh_put_buffer(&mut buf), -1003);
            assert_eq!(mesh_put_buffer_timeout(&mut buf, 0), -1003);
            assert_eq!(mesh_buffer_set_payload_len(buf, 0), -1003);
            assert_eq!(mesh_buffer_set_metadata_len(buf, 0), -1003);
            assert_eq!(mcm_buffer_seq(buf), 0);
            assert_eq!(mcm_buffer_timestamp_ns(buf), 0);
            let msg = CStr::from_ptr(mcm_last_error()).to_str().unwrap();
            assert_eq!(
                msg,
                "mesh_buffer_set_metadata_len: the buffer pointer is NULL"
            );
        }
    }

    #[test]
    fn wrong_magic_is_refused() {
        let mut fake = [0x5555_5555_5555_5555u64; 16];
        let p = fake.as_mut_ptr();
        // SAFETY: `fake` is 128 readable, aligned, initialised bytes: enough for every magic.
        unsafe {
            let mut mc = p.cast::<MeshClient>();
            assert_eq!(mesh_delete_client(&mut mc), -1000);
            assert_eq!(mc, p.cast());
            let mut conn = p.cast::<MeshConnection>();
            assert_eq!(mesh_shutdown_connection(conn), -1001);
            assert_eq!(mesh_delete_connection(&mut conn), -1001);
            let mut buf = p.cast::<MeshBuffer>();
            assert_eq!(mesh_put_buffer(&mut buf), -1003);
            assert_eq!(mesh_buffer_set_payload_len(buf, 1), -1003);
            assert_eq!(mcm_buffer_seq(buf), 0);
            // Misaligned.
            let odd = p.cast::<u8>().add(1).cast::<MeshConnection>();
            assert_eq!(mesh_shutdown_connection(odd), -1001);
        }
    }

    #[test]
    fn last_error_is_per_thread_and_empty_at_first() {
        std::thread::spawn(|| {
            // SAFETY: mcm_last_error returns a NUL-terminated string.
            let s = unsafe { CStr::from_ptr(mcm_last_error()) };
            assert_eq!(s, c"");
            // SAFETY: NULL is allowed.
            assert_eq!(unsafe { mesh_shutdown_connection(ptr::null_mut()) }, -1001);
            // SAFETY: as above.
            let s = unsafe { CStr::from_ptr(mcm_last_error()) };
            assert_eq!(
                s.to_str().unwrap(),
                "mesh_shutdown_connection: the connection pointer is NULL"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn invalid_utf8_and_bad_json_are_client_config_errors() {
        let mut mc: *mut MeshClient = ptr::null_mut();
        for cfg in [
            c"{\"apiVersion\": \"\xff\"}",
            c"{",
            c"{\"maxMediaConnections\": \"2\"}",
        ] {
            // SAFETY: valid pointers.
            let rc = unsafe { mesh_create_client(&mut mc, cfg.as_ptr()) };
            assert_eq!(rc, -MESH_ERR_CLIENT_CONFIG_INVAL);
            assert!(mc.is_null());
        }
    }

    #[test]
    fn a_panic_becomes_a_code() {
        let rc = guard("test", || panic!("boom"));
        assert_eq!(rc, -ENOTRECOVERABLE);
        // SAFETY: NUL-terminated.
        let s = unsafe { CStr::from_ptr(mcm_last_error()) };
        assert_eq!(
            s.to_str().unwrap(),
            "test: internal error, the SDK panicked: boom"
        );
    }
}
