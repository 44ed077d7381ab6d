//! What is healthy about a home's routers: the rules behind the warnings.
//!
//! One function per question, each returning a typed answer; `trellis nodes`, `trellis check`
//! and the page's warnings read the answer (carried in [`NodeInfo`]) and only choose the words.
//! Today: a router's certificate ([`certificate`]). Whether a router is online is
//! [`crate::fleet::Liveness`].
//!
//! [`NodeInfo`]: trellis_proto::api::NodeInfo

use std::time::Duration;

use trellis_proto::api::CertHealth;

/// A certificate that expires at `not_after` (unix s), seen at `now`, issued for `ttl`.
/// Agents renew at half of the lifetime: under a quarter left means the renewals failed.
pub fn certificate(not_after: u64, now: u64, ttl: Duration) -> CertHealth {
    if not_after <= now {
        return CertHealth::Expired {
            expired_s_ago: now - not_after,
        };
    }
    let left = not_after - now;
    if left < ttl.as_secs() / 4 {
        CertHealth::RenewalLate { expires_in_s: left }
    } else {
        CertHealth::Valid { expires_in_s: left }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_of_the_lifetime_left_is_the_line() {
        let day = Duration::from_secs(86_400);
        let now = 1_800_000_000;
        assert_eq!(
            certificate(now + 7 * 3600, now, day),
            CertHealth::Valid {
                expires_in_s: 7 * 3600
            }
        );
        // 5 h left of 24: the page used to warn (under 6 h) while `trellis check` did not
        // (under 2 h) and `trellis nodes` never did.
        assert_eq!(
            certificate(now + 5 * 3600, now, day),
            CertHealth::RenewalLate {
                expires_in_s: 5 * 3600
            }
        );
        assert_eq!(
            certificate(now - 60, now, day),
            CertHealth::Expired { expired_s_ago: 60 }
        );
        assert_eq!(
            certificate(now, now, day),
            CertHealth::Expired { expired_s_ago: 0 }
        );
    }
}
