//! What both ends of a link open at set-up, on the control thread: the provider's objects (one
//! domain, one completion queue, one address vector, the link's endpoints), the group's pool
//! mapped a second time and registered whole, a table of operation contexts, and the edge's
//! own epoll set that the lcore parks on.

use std::net::IpAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::NonNull;
use std::time::Duration;

use mcm_control::dataplane::LinkFault;
use mcm_proto::config::transport::RdmaProvider;
use mcm_proto::link::MAX_ENDPOINTS;
use mcm_proto::shm::map::Access;
use mcm_proto::shm::pool::{PoolGeometry, PoolView};
use rustix::event::epoll;

use super::fabric::{
    Av, Completion, Cq, Domain, Endpoint, FiAddr, Info, Mr, OpContext, random_key,
};
use super::window::WINDOW;

/// Entries of a link's completion queue: every write and credit message that can be in flight.
pub const CQ_SIZE: usize = 4 * WINDOW;

/// Longest a link's TCP connect and handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a streaming link checks that its peer still holds the TCP connection.
pub const LIVENESS: Duration = Duration::from_millis(20);

/// How often a link whose CQ has no descriptor to park on (shm) is polled while idle.
pub const POLL_INTERVAL: Duration = Duration::from_micros(200);

/// The provider's objects of one link. Fields drop in order: endpoints first, then the CQ and
/// AV they are bound to, then the domain.
pub struct Fabric {
    /// The link's endpoints; frames are striped over them, credits travel on the first.
    pub eps: Vec<Endpoint>,
    /// Every endpoint's completions.
    pub cq: Cq,
    /// The peer's endpoints.
    pub av: Av,
    /// The domain.
    pub domain: Domain,
}

impl Fabric {
    /// Opens `provider` on the interface of `node` (ignored by `shm`) with `endpoints`
    /// endpoints sharing one CQ and one AV.
    ///
    /// # Errors
    /// Which libfabric call failed and what it said.
    pub fn open(provider: RdmaProvider, node: IpAddr, endpoints: usize) -> Result<Self, String> {
        let node = (provider != RdmaProvider::Shm).then_some(node);
        let info = Info::find(provider, node).map_err(|e| {
            format!(
                "libfabric has no {} provider for this link{}: {e}",
                provider.as_str(),
                node.map(|n| format!(" on {n}")).unwrap_or_default()
            )
        })?;
        if info.cq_data_size() < 8 || info.rma_iov_limit() < 2 {
            return Err(format!(
                "provider {} cannot carry a frame's tag and two segments in one write \
                 ({} bytes of remote CQ data, {} RMA segments; needed: 8 and 2)",
                info.provider_name(),
                info.cq_data_size(),
                info.rma_iov_limit()
            ));
        }
        if info.rx_cq_data() {
            return Err(format!(
                "provider {} needs a posted receive per remote write (FI_RX_CQ_DATA), which \
                 links do not post (allowed: tcp, shm, verbs through ofi_rxm)",
                info.provider_name()
            ));
        }
        let domain = Domain::open(info).map_err(|e| e.to_string())?;
        let cq = domain.cq(CQ_SIZE).map_err(|e| e.to_string())?;
        let av = domain.av(MAX_ENDPOINTS).map_err(|e| e.to_string())?;
        let eps = (0..endpoints)
            .map(|_| domain.endpoint(&cq, &av))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            eps,
            cq,
            av,
            domain,
        })
    }

    /// The endpoints' provider addresses, for the peer.
    ///
    /// # Errors
    /// `fi_getname`'s.
    pub fn names(&self) -> Result<Vec<Vec<u8>>, String> {
        self.eps
            .iter()
            .map(|e| e.name().map_err(|e| e.to_string()))
            .collect()
    }

    /// Inserts the peer's endpoint addresses (as many as ours) into the AV.
    ///
    /// # Errors
    /// [`LinkFault::Handshake`] for a wrong count; the provider's refusal of an address.
    pub fn insert_peers(&self, addrs: &[Vec<u8>]) -> Result<[FiAddr; MAX_ENDPOINTS], LinkFault> {
        if addrs.len() != self.eps.len() {
            return Err(LinkFault::Handshake(
                mcm_control::dataplane::ShortText::new(&format!(
                    "the peer named {} endpoints, this link has {}",
                    addrs.len(),
                    self.eps.len()
                )),
            ));
        }
        let mut out = [0; MAX_ENDPOINTS];
        for (o, a) in out.iter_mut().zip(addrs) {
            *o = self.av.insert(a)?;
        }
        Ok(out)
    }

    /// The descriptor of `mr` for local operations, where the provider wants one.
    pub fn desc(&self, mr: Option<&Mr>) -> *mut std::ffi::c_void {
        match mr {
            Some(m) if self.domain.info().needs_local_mr() => m.desc(),
            _ => std::ptr::null_mut(),
        }
    }

    /// Registers `len` bytes at `buf` for `access`, under a random key unless the provider
    /// picks keys.
    ///
    /// # Errors
    /// `fi_mr_reg`'s, or no randomness.
    ///
    /// # Safety
    /// As [`Domain::register`]: the memory outlives the registration and every endpoint.
    pub unsafe fn register(&self, buf: *const u8, len: usize, access: u64) -> Result<Mr, String> {
        let key = match self.domain.info().provider_keys() {
            true => 0,
            false => random_key().map_err(|e| format!("no random memory key: {e}"))?,
        };
        // SAFETY: the caller keeps the memory valid for the registration's life.
        unsafe { self.domain.register(buf, len, access, key) }.map_err(|e| e.to_string())
    }

    /// Whether the lcore may park now (no completion pending; the CQ has a descriptor).
    pub fn may_park(&self) -> bool {
        self.cq.wait_fd().is_some() && self.domain.trywait(&[&self.cq])
    }
}

/// The group's pool, mapped a second time by the link, and its registration when there is one.
/// The registration drops before the mapping.
pub struct LinkMemory {
    /// The registration of the whole mapping.
    pub mr: Option<Mr>,
    /// The mapping.
    pub view: PoolView,
}

impl LinkMemory {
    /// Maps the pool behind `fd` with `access`; registers it whole for `fi_access` when
    /// `register` (a receiving link always, a sending one where the provider wants local
    /// descriptors).
    ///
    /// # Errors
    /// What failed, for the edge's set-up error.
    pub fn map(
        fabric: &Fabric,
        fd: BorrowedFd<'_>,
        geometry: PoolGeometry,
        access: Access,
        fi_access: Option<u64>,
    ) -> Result<Self, String> {
        let view = PoolView::attach(fd, geometry, access)
            .map_err(|e| format!("cannot map the group's pool for the link: {e}"))?;
        let mr = match fi_access {
            None => None,
            Some(a) => {
                let (p, len) = view.region();
                // SAFETY: the mapping lives in `view`, which drops after `mr` (field order), and
                // the endpoints that use it are dropped before either (the edge's field order).
                Some(unsafe { fabric.register(p.as_ptr(), len, a) }?)
            }
        };
        Ok(Self { mr, view })
    }

    /// Where slot `slot` starts in this process (`slot` below the slot count).
    pub fn slot_ptr(&self, slot: u32) -> NonNull<u8> {
        let g = self.view.geometry();
        debug_assert!(slot < g.slot_count);
        let (base, _) = self.view.region();
        // SAFETY: slot < slot_count, so the offset lies inside the mapping (slot_count slots of
        // slot_stride bytes).
        unsafe { base.add((u64::from(slot) * g.slot_stride()) as usize) }
    }
}

/// A buffer of completions, read into poll after poll.
pub struct Completions(pub [Completion; crate::group::IO_BATCH]);

impl Default for Completions {
    fn default() -> Self {
        Self([Completion::default(); crate::group::IO_BATCH])
    }
}

// SAFETY: completions are plain data; their context pointers are only compared, never followed.
unsafe impl Send for Completions {}

/// A fixed table of operation contexts: an operation's completion names its context's address,
/// which gives its index back.
pub struct Contexts<const N: usize> {
    ctx: Box<[OpContext; N]>,
}

// SAFETY: the contexts are memory the provider uses while an operation is in flight; the edge
// owning them is used by one lcore at a time, and moves between threads only with its endpoints.
unsafe impl<const N: usize> Send for Contexts<N> {}

impl<const N: usize> Default for Contexts<N> {
    fn default() -> Self {
        Self {
            ctx: Box::new([OpContext::default(); N]),
        }
    }
}

impl<const N: usize> Contexts<N> {
    /// Context `i`'s address, for an operation.
    pub fn ptr(&mut self, i: usize) -> *mut OpContext {
        &mut self.ctx[i]
    }

    /// Which context a completion's `op_context` names, if one of these.
    pub fn index(&self, p: *mut std::ffi::c_void) -> Option<usize> {
        let base = self.ctx.as_ptr() as usize;
        let at = (p as usize).checked_sub(base)?;
        let size = size_of::<OpContext>();
        (at % size == 0 && at / size < N).then_some(at / size)
    }
}

/// The edge's own epoll set: what it waits on changes with its state (a listener, a socket,
/// the CQ), while the group watches one descriptor per edge.
pub struct Waker {
    epoll: OwnedFd,
}

impl Waker {
    /// An empty set.
    ///
    /// # Errors
    /// `epoll_create1`'s.
    pub fn new() -> Result<Self, String> {
        epoll::create(epoll::CreateFlags::CLOEXEC)
            .map(|epoll| Self { epoll })
            .map_err(|e| format!("cannot create the link's epoll set: {e}"))
    }

    /// Watches `fd` for input (and output too when `out`).
    pub fn watch(&self, fd: BorrowedFd<'_>, out: bool) {
        let mut flags = epoll::EventFlags::IN;
        if out {
            flags |= epoll::EventFlags::OUT;
        }
        let data = epoll::EventData::new_u64(0);
        if epoll::add(&self.epoll, fd, data, flags).is_err() {
            let _ = epoll::modify(&self.epoll, fd, data, flags);
        }
    }

    /// Stops watching `fd`.
    pub fn unwatch(&self, fd: BorrowedFd<'_>) {
        let _ = epoll::delete(&self.epoll, fd);
    }

    /// The descriptor the group watches.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.epoll.as_fd()
    }
}

/// Watches the raw descriptor of a CQ (`FI_WAIT_FD`).
pub fn watch_cq(waker: &Waker, cq: &Cq) {
    if let Some(fd) = cq.wait_fd() {
        // SAFETY: the CQ owns the descriptor and outlives the edge's epoll registration (both
        // live in the edge; epoll forgets a descriptor when it is closed).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        waker.watch(fd, false);
    }
}
