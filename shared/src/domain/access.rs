//! Who may read which feed: the public feed is for anyone, the backend feeds for the peer
//! backends entitled to them ([`AccessPolicy`]); [`Peer`] is the authenticated backend behind
//! a request, as a mutual-TLS listener names it.

use std::sync::Arc;

use crate::domain::feed::Feed;
use crate::domain::key::RegionId;
use crate::domain::registry::RegistryGrants;

/// Who may read which backend feed, besides holders of the admin token.
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    /// Token for admin routes (and, until peers authenticate with TLS, for backend feeds).
    pub admin_token: String,
    /// Regions whose backends may read the all-to-all feed (the local configuration).
    pub a2a_consumers: Vec<RegionId>,
    /// When a trust registry is in force: what it grants now. A region it does not list (a
    /// revoked one) reads no backend feed, unless the local configuration names it.
    pub registry: Option<Arc<RegistryGrants>>,
    /// Regions the local peers file names (with a registry in force, they keep their access).
    pub local_peers: Vec<RegionId>,
}

/// The authenticated peer backend behind a request (set by a mutual-TLS listener): the
/// region named in its client certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer(pub RegionId);

impl AccessPolicy {
    /// Whether `peer` (or an anonymous caller) may read `feed`.
    pub fn may_read(&self, feed: Feed, peer: Option<Peer>) -> bool {
        match (feed, peer) {
            (Feed::Public, _) => true,
            (Feed::Region(region), Some(Peer(peer))) => region == peer && self.is_known(peer),
            (Feed::AllToAll, Some(Peer(peer))) => {
                self.a2a_consumers.contains(&peer)
                    || self.registry.as_ref().is_some_and(|r| r.may_read_a2a(peer))
            }
            (_, None) => false,
        }
    }

    /// Whether a backend of `region` may read anything: always without a registry; with one,
    /// if the registry or the local configuration names it.
    fn is_known(&self, region: RegionId) -> bool {
        match &self.registry {
            None => true,
            Some(registry) => {
                registry.is_member(region)
                    || self.local_peers.contains(&region)
                    || self.a2a_consumers.contains(&region)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_read_only_the_feeds_they_are_entitled_to() {
        let (a, c): (RegionId, RegionId) = ("AT".parse().unwrap(), "CZ".parse().unwrap());
        let policy = AccessPolicy {
            admin_token: "t".into(),
            a2a_consumers: vec![a],
            ..Default::default()
        };
        assert!(policy.may_read(Feed::Public, None));
        assert!(policy.may_read(Feed::Region(a), Some(Peer(a))));
        assert!(policy.may_read(Feed::AllToAll, Some(Peer(a))));
        assert!(!policy.may_read(Feed::Region(a), Some(Peer(c))));
        assert!(!policy.may_read(Feed::AllToAll, Some(Peer(c))));
        assert!(!policy.may_read(Feed::AllToAll, None));
    }

    #[test]
    fn with_a_registry_only_listed_regions_read_backend_feeds() {
        use crate::domain::registry::FederationView;
        let region = |id: &str| id.parse::<RegionId>().unwrap();
        let grants = Arc::new(RegistryGrants::default());
        let policy = AccessPolicy {
            admin_token: "t".into(),
            registry: Some(grants.clone()),
            local_peers: vec![region("CZ")],
            ..Default::default()
        };
        let mut view = FederationView::default();
        view.members.extend([region("AT"), region("BE")]);
        view.a2a_consumers.insert(region("BE"));
        grants.update(&view);
        assert!(policy.may_read(Feed::Region(region("AT")), Some(Peer(region("AT")))));
        assert!(policy.may_read(Feed::AllToAll, Some(Peer(region("BE")))));
        assert!(!policy.may_read(Feed::AllToAll, Some(Peer(region("AT")))));
        assert!(!policy.may_read(Feed::Region(region("FR")), Some(Peer(region("FR")))));
        assert!(policy.may_read(Feed::Region(region("CZ")), Some(Peer(region("CZ")))));
        // BE is revoked: it reads nothing any more.
        view.members.remove(&region("BE"));
        grants.update(&view);
        assert!(!policy.may_read(Feed::AllToAll, Some(Peer(region("BE")))));
        assert!(!policy.may_read(Feed::Region(region("BE")), Some(Peer(region("BE")))));
    }
}
