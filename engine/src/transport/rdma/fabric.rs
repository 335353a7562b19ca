//! The safe layer over libfabric: every object is owned, closed on drop after the objects that
//! depend on it (each child keeps its parent alive), and every failure says which call failed
//! and what libfabric said.
//!
//! Objects are opened with `FI_THREAD_SAFE`, so sharing them between threads is the provider's
//! to serialise; a link uses its objects from one lcore at a time anyway.
//!
//! What the engine asks of a provider: reliable datagram endpoints (`FI_EP_RDM`) with RMA
//! writes carrying remote completion data and two-sided messages (credits), completion queues
//! in the `FI_CQ_FORMAT_DATA` format with a file descriptor to wait on where the provider has
//! one, and an `FI_CONTEXT2` area with every operation (always given, whatever the provider's
//! mode asks). The memory-registration modes it can handle are requested as hints and read back
//! from the answer: `FI_MR_LOCAL` (local buffers need a descriptor), `FI_MR_VIRT_ADDR` (remote
//! addresses are virtual addresses, not offsets), `FI_MR_ALLOCATED` and `FI_MR_PROV_KEY` (the
//! provider picks keys; otherwise the caller does, and they must be unique per domain).

use std::ffi::{CStr, CString};
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::sync::Arc;

use libfabric_sys as fi;
use mcm_control::dataplane::LinkFault;
use mcm_proto::config::transport::RdmaProvider;

/// A fabric address in an address vector (`fi_addr_t`).
pub type FiAddr = fi::fi_addr_t;

/// A completion: which operation (its context), what kind, and the remote data of a write.
pub type Completion = fi::fi_cq_data_entry;

/// The per-operation context libfabric may use (`FI_CONTEXT2`); the engine gives one with every
/// operation and finds the operation again by its address.
pub type OpContext = fi::fi_context2;

/// `FI_ADDR_UNSPEC`: receive from any peer.
pub const ADDR_UNSPEC: FiAddr = u64::MAX;

/// A libfabric call that failed: which one, and its (negative) error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FabricError {
    /// The call, e.g. `"fi_getinfo"`.
    pub op: &'static str,
    /// libfabric's error code, negative (`-FI_EAGAIN`, ...).
    pub code: i32,
}

impl FabricError {
    fn check(op: &'static str, rc: isize) -> Result<(), Self> {
        match rc {
            0.. => Ok(()),
            _ => Err(Self {
                op,
                code: rc as i32,
            }),
        }
    }

    /// Whether the call only lacked resources for now (`-FI_EAGAIN`): retry it later.
    pub fn is_again(&self) -> bool {
        self.code == -(fi::FI_EAGAIN as i32)
    }

    /// `fi_strerror` of the code.
    pub fn text(&self) -> &'static str {
        // SAFETY: fi_strerror returns a pointer to a static, NUL-terminated string for any code.
        let s = unsafe { CStr::from_ptr(fi::fi_strerror(self.code.saturating_neg())) };
        s.to_str().unwrap_or("(error text not UTF-8)")
    }
}

impl std::fmt::Display for FabricError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.op, self.text(), self.code)
    }
}

impl std::error::Error for FabricError {}

impl From<FabricError> for LinkFault {
    fn from(e: FabricError) -> Self {
        LinkFault::Fabric {
            op: e.op,
            code: e.code,
            text: e.text(),
        }
    }
}

/// What a provider offered: the first answer of `fi_getinfo` to the engine's hints.
pub struct Info {
    list: NonNull<fi::fi_info>,
}

// SAFETY: the fi_info list is plain memory owned by this value; nothing else points into it.
unsafe impl Send for Info {}
// SAFETY: shared references only read it.
unsafe impl Sync for Info {}

impl Info {
    /// Asks libfabric for `provider` (`tcp` over `ofi_rxm`, `shm`, `verbs` over `ofi_rxm`),
    /// on the interface of `node` when given (the engine's RDMA address).
    ///
    /// # Errors
    /// `fi_getinfo`'s, e.g. `-FI_ENODATA` when the provider is not installed or cannot serve
    /// that address with the capabilities the engine needs.
    pub fn find(provider: RdmaProvider, node: Option<IpAddr>) -> Result<Self, FabricError> {
        // SAFETY: fi_allocinfo returns a zeroed fi_info with its attribute structs allocated,
        // or null; it is freed with fi_freeinfo below on every path.
        let hints = unsafe { fi::fi_allocinfo() };
        let Some(hints) = NonNull::new(hints) else {
            return Err(FabricError {
                op: "fi_allocinfo",
                code: -(fi::FI_ENOMEM as i32),
            });
        };
        let name = CString::new(provider.as_str()).expect("no NUL in a provider name");
        let node = node.map(|ip| CString::new(ip.to_string()).expect("no NUL in an address"));
        let mut out = ptr::null_mut();
        // SAFETY: hints is a valid fi_info from fi_allocinfo whose attribute pointers are set;
        // prov_name is a malloc'd string that fi_freeinfo frees; node outlives the call.
        let rc = unsafe {
            let h = hints.as_ptr();
            (*h).caps = (fi::FI_MSG | fi::FI_RMA) as u64
                | (fi::FI_SEND | fi::FI_RECV | fi::FI_WRITE | fi::FI_REMOTE_WRITE) as u64;
            (*h).mode = fi::FI_CONTEXT | fi::FI_CONTEXT2;
            (*(*h).ep_attr).type_ = fi::fi_ep_type_FI_EP_RDM;
            let d = (*h).domain_attr;
            (*d).mr_mode =
                (fi::FI_MR_LOCAL | fi::FI_MR_VIRT_ADDR | fi::FI_MR_ALLOCATED | fi::FI_MR_PROV_KEY)
                    as i32;
            (*d).threading = fi::fi_threading_FI_THREAD_SAFE;
            (*(*h).fabric_attr).prov_name = libc::strdup(name.as_ptr());
            let (node_ptr, flags) = match &node {
                Some(n) => (n.as_ptr(), fi::FI_SOURCE),
                None => (ptr::null(), 0),
            };
            let rc = fi::fi_getinfo(
                libfabric_sys::API_VERSION,
                node_ptr,
                ptr::null(),
                flags,
                h,
                &mut out,
            );
            fi::fi_freeinfo(h);
            rc
        };
        FabricError::check("fi_getinfo", rc as isize)?;
        NonNull::new(out)
            .map(|list| Self { list })
            .ok_or(FabricError {
                op: "fi_getinfo",
                code: -(fi::FI_ENODATA as i32),
            })
    }

    fn raw(&self) -> &fi::fi_info {
        // SAFETY: the list is valid until Drop, and its first entry is a complete fi_info.
        unsafe { self.list.as_ref() }
    }

    fn domain_attr(&self) -> &fi::fi_domain_attr {
        // SAFETY: every fi_info fi_getinfo returns has its domain_attr set.
        unsafe { &*self.raw().domain_attr }
    }

    /// The provider's name as libfabric reports it, e.g. `"tcp;ofi_rxm"`.
    pub fn provider_name(&self) -> String {
        // SAFETY: fabric_attr and its prov_name are set in every answer of fi_getinfo.
        let name = unsafe { CStr::from_ptr((*self.raw().fabric_attr).prov_name) };
        name.to_string_lossy().into_owned()
    }

    fn mr_mode(&self) -> u32 {
        self.domain_attr().mr_mode as u32
    }

    /// Local buffers need a registration's descriptor (`FI_MR_LOCAL`).
    pub fn needs_local_mr(&self) -> bool {
        self.mr_mode() & fi::FI_MR_LOCAL != 0
    }

    /// Remote addresses are virtual addresses (`FI_MR_VIRT_ADDR`); otherwise offsets into the
    /// registered region.
    pub fn virt_addr(&self) -> bool {
        self.mr_mode() & fi::FI_MR_VIRT_ADDR != 0
    }

    /// The provider chooses memory keys (`FI_MR_PROV_KEY`); otherwise the caller does.
    pub fn provider_keys(&self) -> bool {
        self.mr_mode() & fi::FI_MR_PROV_KEY != 0
    }

    /// Bytes of remote completion data a write can carry.
    pub fn cq_data_size(&self) -> usize {
        self.domain_attr().cq_data_size
    }

    /// Every write with remote data consumes a posted receive at the target (`FI_RX_CQ_DATA`).
    pub fn rx_cq_data(&self) -> bool {
        self.raw().mode & fi::FI_RX_CQ_DATA != 0
    }

    /// Most bytes `fi_inject` sends without a completion.
    pub fn inject_size(&self) -> usize {
        // SAFETY: tx_attr is set in every answer of fi_getinfo.
        unsafe { (*self.raw().tx_attr).inject_size }
    }

    /// Most local and remote segments one RMA write may have.
    pub fn rma_iov_limit(&self) -> usize {
        // SAFETY: tx_attr is set in every answer of fi_getinfo.
        let tx = unsafe { &*self.raw().tx_attr };
        tx.iov_limit.min(tx.rma_iov_limit)
    }
}

impl Drop for Info {
    fn drop(&mut self) {
        // SAFETY: the list came from fi_getinfo and is freed once, here.
        unsafe { fi::fi_freeinfo(self.list.as_ptr()) }
    }
}

/// Closes a libfabric object through its `fid`.
fn close(fid: *mut fi::fid) {
    // SAFETY: callers pass the fid of an object they own and never use again.
    let rc = unsafe { fi::fi_close(fid) };
    if rc != 0 {
        let e = FabricError {
            op: "fi_close",
            code: rc,
        };
        tracing::warn!("closing a libfabric object: {e}");
    }
}

struct DomainInner {
    domain: NonNull<fi::fid_domain>,
    fabric: NonNull<fi::fid_fabric>,
    info: Info,
}

impl Drop for DomainInner {
    fn drop(&mut self) {
        // SAFETY: both objects are owned here and every child (which holds an Arc of this)
        // is closed already.
        unsafe {
            close(&mut (*self.domain.as_ptr()).fid);
            close(&mut (*self.fabric.as_ptr()).fid);
        }
    }
}

// SAFETY: opened with FI_THREAD_SAFE: the provider serialises calls from several threads.
unsafe impl Send for DomainInner {}
// SAFETY: as above.
unsafe impl Sync for DomainInner {}

/// A fabric and one domain on it, for the provider an [`Info`] named.
#[derive(Clone)]
pub struct Domain {
    inner: Arc<DomainInner>,
}

impl Domain {
    /// Opens the fabric and domain `info` describes.
    ///
    /// # Errors
    /// `fi_fabric`'s or `fi_domain`'s.
    pub fn open(info: Info) -> Result<Self, FabricError> {
        let mut fabric = ptr::null_mut();
        // SAFETY: fabric_attr is set in the answer; the out pointer is valid.
        let rc = unsafe { fi::fi_fabric(info.raw().fabric_attr, &mut fabric, ptr::null_mut()) };
        FabricError::check("fi_fabric", rc as isize)?;
        let fabric = NonNull::new(fabric).expect("fi_fabric succeeded");
        let mut domain = ptr::null_mut();
        // SAFETY: fabric was just opened; info is the answer it was opened for.
        let rc = unsafe {
            fi::fi_domain(
                fabric.as_ptr(),
                info.list.as_ptr(),
                &mut domain,
                ptr::null_mut(),
            )
        };
        if let Err(e) = FabricError::check("fi_domain", rc as isize) {
            // SAFETY: the fabric is ours and has no child.
            close(unsafe { &mut (*fabric.as_ptr()).fid });
            return Err(e);
        }
        let domain = NonNull::new(domain).expect("fi_domain succeeded");
        Ok(Self {
            inner: Arc::new(DomainInner {
                domain,
                fabric,
                info,
            }),
        })
    }

    /// What the provider offered.
    pub fn info(&self) -> &Info {
        &self.inner.info
    }

    /// Opens a completion queue of `size` entries; with a file descriptor to wait on where the
    /// provider has one.
    ///
    /// # Errors
    /// `fi_cq_open`'s.
    pub fn cq(&self, size: usize) -> Result<Cq, FabricError> {
        let open = |wait_obj| {
            let mut attr = fi::fi_cq_attr {
                size,
                format: fi::fi_cq_format_FI_CQ_FORMAT_DATA,
                wait_obj,
                ..Default::default()
            };
            let mut cq = ptr::null_mut();
            // SAFETY: the domain is open; attr and the out pointer are valid for the call.
            let rc = unsafe {
                fi::fi_cq_open(
                    self.inner.domain.as_ptr(),
                    &mut attr,
                    &mut cq,
                    ptr::null_mut(),
                )
            };
            FabricError::check("fi_cq_open", rc as isize)
                .map(|()| NonNull::new(cq).expect("fi_cq_open succeeded"))
        };
        let (cq, waits) = match open(fi::fi_wait_obj_FI_WAIT_FD) {
            Ok(cq) => (cq, true),
            Err(_) => (open(fi::fi_wait_obj_FI_WAIT_NONE)?, false),
        };
        let mut fd: RawFd = -1;
        if waits {
            // SAFETY: the CQ was opened with FI_WAIT_FD; FI_GETWAIT writes one int.
            let rc = unsafe {
                fi::fi_control(
                    &mut (*cq.as_ptr()).fid,
                    fi::FI_GETWAIT as i32,
                    (&mut fd as *mut RawFd).cast(),
                )
            };
            if rc != 0 {
                fd = -1;
            }
        }
        Ok(Cq {
            hold: Arc::new(CqHold(cq, self.clone())),
            wait_fd: fd,
        })
    }

    /// Opens an address vector (a table) for about `count` peers.
    ///
    /// # Errors
    /// `fi_av_open`'s.
    pub fn av(&self, count: usize) -> Result<Av, FabricError> {
        let mut attr = fi::fi_av_attr {
            type_: fi::fi_av_type_FI_AV_TABLE,
            count,
            ..Default::default()
        };
        let mut av = ptr::null_mut();
        // SAFETY: the domain is open; attr and the out pointer are valid for the call.
        let rc = unsafe {
            fi::fi_av_open(
                self.inner.domain.as_ptr(),
                &mut attr,
                &mut av,
                ptr::null_mut(),
            )
        };
        FabricError::check("fi_av_open", rc as isize)?;
        Ok(Av {
            hold: Arc::new(AvHold(
                NonNull::new(av).expect("fi_av_open succeeded"),
                self.clone(),
            )),
        })
    }

    /// Opens an endpoint whose sends, receives and writes complete on `cq`, addressing peers
    /// through `av`, and enables it.
    ///
    /// # Errors
    /// `fi_endpoint`'s, `fi_ep_bind`'s or `fi_enable`'s.
    pub fn endpoint(&self, cq: &Cq, av: &Av) -> Result<Endpoint, FabricError> {
        let mut ep = ptr::null_mut();
        // SAFETY: the domain is open for this very info.
        let rc = unsafe {
            fi::fi_endpoint(
                self.inner.domain.as_ptr(),
                self.inner.info.list.as_ptr(),
                &mut ep,
                ptr::null_mut(),
            )
        };
        FabricError::check("fi_endpoint", rc as isize)?;
        let ep = Endpoint {
            ep: NonNull::new(ep).expect("fi_endpoint succeeded"),
            _cq: cq.hold.clone(),
            _av: av.hold.clone(),
        };
        // SAFETY: ep, cq and av are open objects of this domain.
        unsafe {
            let e = ep.ep.as_ptr();
            let rc = fi::fi_ep_bind(
                e,
                &mut (*cq.raw()).fid,
                (fi::FI_TRANSMIT | fi::FI_RECV) as u64,
            );
            FabricError::check("fi_ep_bind(cq)", rc as isize)?;
            let rc = fi::fi_ep_bind(e, &mut (*av.hold.0.as_ptr()).fid, 0);
            FabricError::check("fi_ep_bind(av)", rc as isize)?;
            FabricError::check("fi_enable", fi::fi_enable(e) as isize)?;
        }
        Ok(ep)
    }

    /// Registers `len` bytes at `buf` for `access` (`FI_WRITE`, `FI_REMOTE_WRITE`, ...) under
    /// `key` when the caller chooses keys (it must be unique in the domain).
    ///
    /// # Errors
    /// `fi_mr_reg`'s.
    ///
    /// # Safety
    /// The memory must stay mapped, and writable where `access` lets a peer write it, until the
    /// returned registration and every endpoint that used it are dropped.
    pub unsafe fn register(
        &self,
        buf: *const u8,
        len: usize,
        access: u64,
        key: u64,
    ) -> Result<Mr, FabricError> {
        let mut mr = ptr::null_mut();
        // SAFETY: the caller keeps the memory valid for the registration's life; the domain is
        // open and the out pointer valid.
        let rc = unsafe {
            fi::fi_mr_reg(
                self.inner.domain.as_ptr(),
                buf.cast(),
                len,
                access,
                0,
                key,
                0,
                &mut mr,
                ptr::null_mut(),
            )
        };
        FabricError::check("fi_mr_reg", rc as isize)?;
        let mr = NonNull::new(mr).expect("fi_mr_reg succeeded");
        // SAFETY: mr was just registered.
        let (key, desc) = unsafe { (fi::fi_mr_key(mr.as_ptr()), fi::fi_mr_desc(mr.as_ptr())) };
        Ok(Mr {
            mr,
            key,
            desc,
            base: buf as u64,
            len,
            _domain: self.clone(),
        })
    }

    /// Whether an lcore may park on the CQs' wait descriptors now (`fi_trywait`): false when
    /// completions are already pending (read them first), or for more than four CQs at once.
    pub fn trywait(&self, cqs: &[&Cq]) -> bool {
        let mut fids: [*mut fi::fid; 4] = [ptr::null_mut(); 4];
        let n = cqs.len();
        if n > fids.len() {
            return false;
        }
        for (slot, cq) in fids.iter_mut().zip(cqs) {
            // SAFETY: each CQ is open; only its fid's address is taken.
            *slot = unsafe { &mut (*cq.raw()).fid };
        }
        // SAFETY: the fabric is open and fids[..n] are open CQs of it.
        let rc = unsafe { fi::fi_trywait(self.inner.fabric.as_ptr(), fids.as_mut_ptr(), n as i32) };
        rc == 0
    }
}

/// A completion queue.
pub struct Cq {
    hold: Arc<CqHold>,
    wait_fd: RawFd,
}

/// Owns a CQ: the last holder (the [`Cq`] or an endpoint bound to it) closes it, after every
/// endpoint bound to it, before its domain.
struct CqHold(NonNull<fi::fid_cq>, Domain);

// SAFETY: opened with FI_THREAD_SAFE (see DomainInner).
unsafe impl Send for CqHold {}
// SAFETY: as above.
unsafe impl Sync for CqHold {}

impl Drop for CqHold {
    fn drop(&mut self) {
        // SAFETY: the last holder of the CQ closes it.
        close(unsafe { &mut (*self.0.as_ptr()).fid });
    }
}

impl Cq {
    fn raw(&self) -> *mut fi::fid_cq {
        self.hold.0.as_ptr()
    }

    /// Reads up to `out.len()` completions; `Ok(0)` when none is pending. An operation that
    /// failed comes back as the error of its completion.
    ///
    /// # Errors
    /// The failed operation's error (`fi_cq_readerr`), or `fi_cq_read`'s own.
    pub fn read(&self, out: &mut [Completion]) -> Result<usize, FabricError> {
        // SAFETY: the CQ is open and in FI_CQ_FORMAT_DATA; out has room for out.len() entries.
        let n = unsafe { fi::fi_cq_read(self.raw(), out.as_mut_ptr().cast(), out.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        if n == -(fi::FI_EAGAIN as isize) {
            return Ok(0);
        }
        if n == -(fi::FI_EAVAIL as isize) {
            let mut err = fi::fi_cq_err_entry::default();
            // SAFETY: the CQ is open and has an error entry; err is a valid out struct.
            let rc = unsafe { fi::fi_cq_readerr(self.raw(), &mut err, 0) };
            let code = if rc >= 0 { -err.err.abs() } else { rc as i32 };
            return Err(FabricError {
                op: "a completion",
                code,
            });
        }
        Err(FabricError {
            op: "fi_cq_read",
            code: n as i32,
        })
    }

    /// The descriptor that becomes readable when a completion may be pending (`FI_WAIT_FD`);
    /// `None` when the provider has none (poll instead of parking).
    pub fn wait_fd(&self) -> Option<RawFd> {
        (self.wait_fd >= 0).then_some(self.wait_fd)
    }

    /// The domain it belongs to.
    pub fn domain(&self) -> &Domain {
        &self.hold.1
    }
}

/// An address vector: peers' provider addresses, inserted once, named by [`FiAddr`].
pub struct Av {
    hold: Arc<AvHold>,
}

/// Owns an AV, as [`CqHold`] owns a CQ.
struct AvHold(
    NonNull<fi::fid_av>,
    #[allow(dead_code, reason = "keeps the domain open")] Domain,
);

// SAFETY: opened with FI_THREAD_SAFE (see DomainInner).
unsafe impl Send for AvHold {}
// SAFETY: as above.
unsafe impl Sync for AvHold {}

impl Drop for AvHold {
    fn drop(&mut self) {
        // SAFETY: the last holder of the AV closes it.
        close(unsafe { &mut (*self.0.as_ptr()).fid });
    }
}

impl Av {
    /// Inserts a peer's provider address (what its `fi_getname` gave).
    ///
    /// # Errors
    /// `fi_av_insert`'s (an address of the wrong format is refused by the provider).
    pub fn insert(&self, addr: &[u8]) -> Result<FiAddr, FabricError> {
        let mut out: FiAddr = ADDR_UNSPEC;
        // SAFETY: the AV is open; addr holds one address of the provider's format (its length is
        // the provider's to check); out has room for one fi_addr_t.
        let rc = unsafe {
            fi::fi_av_insert(
                self.hold.0.as_ptr(),
                addr.as_ptr().cast(),
                1,
                &mut out,
                0,
                ptr::null_mut(),
            )
        };
        match rc {
            1 => Ok(out),
            rc => Err(FabricError {
                op: "fi_av_insert",
                code: if rc < 0 { rc } else { -(fi::FI_EINVAL as i32) },
            }),
        }
    }
}

/// A memory registration: its key and descriptor, and the region it covers.
pub struct Mr {
    mr: NonNull<fi::fid_mr>,
    key: u64,
    desc: *mut std::ffi::c_void,
    base: u64,
    len: usize,
    _domain: Domain,
}

// SAFETY: opened with FI_THREAD_SAFE (see DomainInner); desc is an opaque token.
unsafe impl Send for Mr {}
// SAFETY: as above.
unsafe impl Sync for Mr {}

impl Mr {
    /// The key a peer names it by.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The descriptor local operations pass (`FI_MR_LOCAL`).
    pub fn desc(&self) -> *mut std::ffi::c_void {
        self.desc
    }

    /// Start address and length of the registered region.
    pub fn region(&self) -> (u64, usize) {
        (self.base, self.len)
    }
}

impl Drop for Mr {
    fn drop(&mut self) {
        // SAFETY: the registration is owned here.
        close(unsafe { &mut (*self.mr.as_ptr()).fid });
    }
}

/// A reliable-datagram endpoint bound to a CQ and an AV.
pub struct Endpoint {
    ep: NonNull<fi::fid_ep>,
    /// Keep its CQ and AV open while it lives.
    _cq: Arc<CqHold>,
    _av: Arc<AvHold>,
}

// SAFETY: opened with FI_THREAD_SAFE (see DomainInner).
unsafe impl Send for Endpoint {}
// SAFETY: as above.
unsafe impl Sync for Endpoint {}

impl Drop for Endpoint {
    fn drop(&mut self) {
        // SAFETY: the endpoint is owned here; its CQ and AV stay open until the fields `cq`
        // and `av` drop, after this.
        close(unsafe { &mut (*self.ep.as_ptr()).fid });
    }
}

/// One segment of a remote write: `len` bytes at `addr` under `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteIov {
    /// Address in the peer's key space.
    pub addr: u64,
    /// Bytes.
    pub len: usize,
    /// The peer's memory key.
    pub key: u64,
}

impl Endpoint {
    /// The endpoint's provider address, for the peer's address vector.
    ///
    /// # Errors
    /// `fi_getname`'s.
    pub fn name(&self) -> Result<Vec<u8>, FabricError> {
        let mut buf = vec![0u8; mcm_proto::link::MAX_ADDRESS_LEN];
        let mut len = buf.len();
        // SAFETY: the endpoint is enabled; buf has room for len bytes.
        let rc = unsafe {
            fi::fi_getname(
                &mut (*self.ep.as_ptr()).fid,
                buf.as_mut_ptr().cast(),
                &mut len,
            )
        };
        FabricError::check("fi_getname", rc as isize)?;
        buf.truncate(len);
        Ok(buf)
    }

    /// Writes the local segments `local` (address, length, descriptor) to the remote segments
    /// `remote` of peer `dest`, with `data` as the peer's remote completion data; completes
    /// on this endpoint's CQ with `ctx`. `Err` with [`FabricError::is_again`]: retry later.
    ///
    /// # Errors
    /// `fi_writemsg`'s.
    ///
    /// # Safety
    /// The local memory must stay valid and unchanged, and `ctx` valid and otherwise unused,
    /// until the completion for `ctx` has been read.
    pub unsafe fn write_data(
        &self,
        local: &[(*const u8, usize, *mut std::ffi::c_void)],
        dest: FiAddr,
        remote: &[RemoteIov],
        data: u64,
        ctx: *mut OpContext,
    ) -> Result<(), FabricError> {
        const MAX: usize = 4;
        let mut iov = [libc::iovec {
            iov_base: ptr::null_mut(),
            iov_len: 0,
        }; MAX];
        let mut desc = [ptr::null_mut(); MAX];
        let mut rma = [fi::fi_rma_iov::default(); MAX];
        let (nl, nr) = (local.len().min(MAX), remote.len().min(MAX));
        for i in 0..nl {
            iov[i] = libc::iovec {
                iov_base: local[i].0 as *mut _,
                iov_len: local[i].1,
            };
            desc[i] = local[i].2;
        }
        for i in 0..nr {
            rma[i] = fi::fi_rma_iov {
                addr: remote[i].addr,
                len: remote[i].len,
                key: remote[i].key,
            };
        }
        let msg = fi::fi_msg_rma {
            msg_iov: iov.as_ptr().cast(),
            desc: desc.as_mut_ptr(),
            iov_count: nl,
            addr: dest,
            rma_iov: rma.as_ptr(),
            rma_iov_count: nr,
            context: ctx.cast(),
            data,
        };
        // SAFETY: msg and the arrays it points to live through the call (the provider copies
        // the descriptors); the caller keeps the memory and ctx valid until completion.
        let rc = unsafe {
            fi::fi_writemsg(
                self.ep.as_ptr(),
                &msg,
                u64::from(fi::FI_REMOTE_CQ_DATA) | u64::from(fi::FI_COMPLETION),
            )
        };
        FabricError::check("fi_writemsg", rc)
    }

    /// Sends `len` bytes at `buf` to peer `dest`; completes on the CQ with `ctx`.
    ///
    /// # Errors
    /// `fi_send`'s; [`FabricError::is_again`]: retry later.
    ///
    /// # Safety
    /// As [`write_data`](Self::write_data): the buffer and `ctx` stay valid until completion.
    pub unsafe fn send(
        &self,
        buf: *const u8,
        len: usize,
        desc: *mut std::ffi::c_void,
        dest: FiAddr,
        ctx: *mut OpContext,
    ) -> Result<(), FabricError> {
        // SAFETY: the caller keeps buf and ctx valid until the completion.
        let rc = unsafe { fi::fi_send(self.ep.as_ptr(), buf.cast(), len, desc, dest, ctx.cast()) };
        FabricError::check("fi_send", rc)
    }

    /// Posts a receive of at most `len` bytes into `buf` from any peer; completes on the CQ
    /// with `ctx`.
    ///
    /// # Errors
    /// `fi_recv`'s; [`FabricError::is_again`]: retry later.
    ///
    /// # Safety
    /// The buffer must stay valid and writable, and `ctx` valid, until the completion.
    pub unsafe fn recv(
        &self,
        buf: *mut u8,
        len: usize,
        desc: *mut std::ffi::c_void,
        ctx: *mut OpContext,
    ) -> Result<(), FabricError> {
        // SAFETY: the caller keeps buf and ctx valid until the completion.
        let rc = unsafe {
            fi::fi_recv(
                self.ep.as_ptr(),
                buf.cast(),
                len,
                desc,
                ADDR_UNSPEC,
                ctx.cast(),
            )
        };
        FabricError::check("fi_recv", rc)
    }
}

/// Whether a completion is a peer's write carrying remote data (not one of our operations).
pub fn is_remote_write(c: &Completion) -> bool {
    let remote_data = u64::from(fi::FI_REMOTE_CQ_DATA | fi::FI_RMA);
    c.flags & u64::from(fi::FI_REMOTE_WRITE) != 0 || c.flags & remote_data == remote_data
}

/// Whether a completion is of a receive we posted.
pub fn is_recv(c: &Completion) -> bool {
    c.flags & u64::from(fi::FI_RECV) != 0 && c.flags & u64::from(fi::FI_MSG) != 0
}

/// A random 64-bit value, for memory keys a peer cannot guess.
///
/// # Errors
/// When the OS has no randomness to give.
pub fn random_key() -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    rustix::rand::getrandom(&mut b, rustix::rand::GetRandomFlags::empty())?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests;
