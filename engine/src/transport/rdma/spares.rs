//! Provider objects opened ahead of need, so that setting up a link does not wait for them.
//!
//! Opening a provider's fabric, domain, CQ, AV and endpoints takes one to two milliseconds
//! with the tuned `ofi_rxm` settings ([`super::PROVIDER_ENV`]) and tens without, on both ends
//! of every link — most of what a new link costs before its first frame. [`Spares`] keeps one
//! ready set of each kind (provider, endpoint count) that was used or announced, hands it to the
//! next link of that kind, and has a worker thread open its replacement shortly after (once the
//! link that took it is set up), so neither the link nor the control thread waits for the
//! provider. A kind the provider cannot open is
//! dropped from the wanted list (a link of that kind then opens its own and reports the
//! provider's error as before).

use std::net::IpAddr;

use crossbeam_channel::{Receiver, Sender};
use mcm_proto::config::transport::RdmaProvider;

use super::link::Fabric;

/// How long the worker waits after a request before it opens the objects.
const OPEN_DELAY: std::time::Duration = std::time::Duration::from_millis(5);

/// A kind of provider objects: the provider and the number of endpoints.
type Kind = (RdmaProvider, usize);

/// Ready provider objects, by kind, and the worker that opens them.
pub struct Spares {
    ip: IpAddr,
    /// Kinds to keep one of.
    wanted: Vec<Kind>,
    ready: Vec<(Kind, Fabric)>,
    /// Asked of the worker and not back yet.
    pending: Vec<Kind>,
    requests: Option<Sender<Kind>>,
    opened: Receiver<(Kind, Result<Fabric, String>)>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ready: Vec<_> = self.ready.iter().map(|(k, _)| k).collect();
        f.debug_struct("Spares")
            .field("wanted", &self.wanted)
            .field("ready", &ready)
            .field("pending", &self.pending)
            .finish()
    }
}

impl Spares {
    /// Spares for links on `ip`, none wanted yet; starts the worker thread (without one, links
    /// open their own objects).
    pub fn new(ip: IpAddr) -> Self {
        let (requests, todo) = crossbeam_channel::unbounded::<Kind>();
        let (done, opened) = crossbeam_channel::unbounded();
        let worker = std::thread::Builder::new()
            .name("mcm-rdma-spares".to_owned())
            .spawn(move || {
                for (provider, n) in todo {
                    // Not while the link that took the last one is still being set up: it
                    // needs the CPU more (its set-up takes a few ms).
                    std::thread::sleep(OPEN_DELAY);
                    let f = Fabric::open(provider, ip, n);
                    if done.send(((provider, n), f)).is_err() {
                        return;
                    }
                }
            });
        let worker = match worker {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!("no spare RDMA provider objects: cannot start their thread: {e}");
                None
            }
        };
        Self {
            ip,
            wanted: Vec::new(),
            ready: Vec::new(),
            pending: Vec::new(),
            requests: worker.as_ref().map(|_| requests),
            opened,
            worker,
        }
    }

    /// Keeps one of `provider` with `endpoints` endpoints ready from now on.
    pub fn want(&mut self, provider: RdmaProvider, endpoints: usize) {
        if !self.wanted.contains(&(provider, endpoints)) {
            self.wanted.push((provider, endpoints));
        }
        self.refill();
    }

    /// Whether a spare of this kind is ready now.
    #[cfg(test)]
    fn has(&mut self, provider: RdmaProvider, endpoints: usize) -> bool {
        self.collect();
        self.ready.iter().any(|(k, _)| *k == (provider, endpoints))
    }

    /// The provider objects for one link: a ready spare of the kind, else freshly opened; the
    /// kind is wanted from now on, and its next spare is asked for.
    ///
    /// # Errors
    /// The provider's, from [`Fabric::open`].
    pub fn take(
        &mut self,
        provider: RdmaProvider,
        ip: IpAddr,
        endpoints: usize,
    ) -> Result<Fabric, String> {
        if ip != self.ip {
            return Fabric::open(provider, ip, endpoints);
        }
        self.collect();
        let kind = (provider, endpoints);
        let fabric = match self.ready.iter().position(|(k, _)| *k == kind) {
            Some(i) => self.ready.swap_remove(i).1,
            None => Fabric::open(provider, ip, endpoints)?,
        };
        self.want(provider, endpoints);
        Ok(fabric)
    }

    /// Takes what the worker opened, and asks it for the wanted kinds neither ready nor on
    /// their way.
    pub fn refill(&mut self) {
        self.collect();
        let Some(requests) = &self.requests else {
            return;
        };
        for &kind in &self.wanted {
            let ready = self.ready.iter().any(|(k, _)| *k == kind);
            if !ready && !self.pending.contains(&kind) && requests.send(kind).is_ok() {
                self.pending.push(kind);
            }
        }
    }

    fn collect(&mut self) {
        while let Ok((kind, res)) = self.opened.try_recv() {
            self.pending.retain(|k| *k != kind);
            match res {
                Ok(f) => self.ready.push((kind, f)),
                Err(e) => {
                    tracing::debug!(
                        "no spare {} objects for links ({} endpoints): {e}",
                        kind.0.as_str(),
                        kind.1
                    );
                    self.wanted.retain(|k| *k != kind);
                }
            }
        }
    }
}

impl Drop for Spares {
    fn drop(&mut self) {
        // The worker ends when its request channel closes.
        self.requests = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LO: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    /// Waits (at most 10 s) until a spare of `kind` is ready.
    fn ready(s: &mut Spares, kind: Kind) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if s.has(kind.0, kind.1) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn a_spare_is_handed_out_once_and_replaced_by_the_worker() {
        let mut s = Spares::new(LO);
        assert!(!s.has(RdmaProvider::Tcp, 1), "nothing wanted yet");
        s.want(RdmaProvider::Tcp, 1);
        assert!(ready(&mut s, (RdmaProvider::Tcp, 1)));
        let a = s.take(RdmaProvider::Tcp, LO, 1).unwrap();
        // The next is on its way; a link that comes first opens its own.
        let b = s.take(RdmaProvider::Tcp, LO, 1).unwrap();
        assert_ne!(a.names().unwrap(), b.names().unwrap(), "distinct endpoints");
        assert!(ready(&mut s, (RdmaProvider::Tcp, 1)), "replaced");
        s.refill();
        assert_eq!(
            s.ready.len() + s.pending.len(),
            1,
            "one of each kind: {s:?}"
        );
        // Another kind becomes wanted by being used.
        let c = s.take(RdmaProvider::Tcp, LO, 2).unwrap();
        assert_eq!(c.eps.len(), 2);
        assert!(ready(&mut s, (RdmaProvider::Tcp, 2)));
    }
}
