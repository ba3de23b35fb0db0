//! Who may read which feed: the public feed is for anyone, the backend feeds for the peer
//! backends entitled to them ([`AccessPolicy`]); [`Peer`] is the authenticated backend behind
//! a request, as a mutual-TLS listener names it.

use crate::domain::feed::Feed;
use crate::domain::key::RegionId;

/// Who may read which backend feed, besides holders of the admin token.
#[derive(Clone, Debug, Default)]
pub struct AccessPolicy {
    /// Token for admin routes (and, until peers authenticate with TLS, for backend feeds).
    pub admin_token: String,
    /// Regions whose backends may read the all-to-all feed.
    pub a2a_consumers: Vec<RegionId>,
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
            (Feed::Region(region), Some(Peer(peer))) => region == peer,
            (Feed::AllToAll, Some(Peer(peer))) => self.a2a_consumers.contains(&peer),
            (_, None) => false,
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
        };
        assert!(policy.may_read(Feed::Public, None));
        assert!(policy.may_read(Feed::Region(a), Some(Peer(a))));
        assert!(policy.may_read(Feed::AllToAll, Some(Peer(a))));
        assert!(!policy.may_read(Feed::Region(a), Some(Peer(c))));
        assert!(!policy.may_read(Feed::AllToAll, Some(Peer(c))));
        assert!(!policy.may_read(Feed::AllToAll, None));
    }
}
