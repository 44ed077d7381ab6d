//! Per-service traffic over the last hour, for the page's charts.
//!
//! Each agent reports its proxy's cumulative counters per service with its telemetry (every
//! 30 s). The controller keeps the last figures per (router, service), adds the difference to
//! the service's one-minute bucket, and keeps [`MINUTES`] buckets per service. A counter that
//! went down means the agent restarted: the new figure is all new traffic. RAM only, bounded by
//! [`MAX_SERVICES`] services and [`MAX_SOURCES`] (router, service) pairs.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::Serialize;
use trellis_proto::api::ServiceTraffic;
use trellis_proto::NodeName;

/// How many one-minute buckets each service keeps: the last hour.
pub const MINUTES: usize = 60;
pub const MAX_SERVICES: usize = 128;
pub const MAX_SOURCES: usize = 1024;

/// One-minute buckets of `N` counters over the last hour ([`MINUTES`]): what reports added
/// in each minute. Shared by the traffic charts and the dependency map ([`crate::graph`]).
#[derive(Debug, Clone)]
pub struct MinuteSeries<const N: usize> {
    /// (unix minute, counts), oldest first.
    buckets: VecDeque<(u64, [u64; N])>,
}

impl<const N: usize> Default for MinuteSeries<N> {
    fn default() -> Self {
        Self {
            buckets: VecDeque::new(),
        }
    }
}

impl<const N: usize> MinuteSeries<N> {
    /// Adds `counts` to minute `minute` (the newest so far) and lets minutes older than the
    /// hour go.
    pub fn add(&mut self, minute: u64, counts: &[u64]) {
        if !matches!(self.buckets.back(), Some((m, _)) if *m == minute) {
            self.buckets.push_back((minute, [0; N]));
        }
        if let Some((_, sum)) = self.buckets.back_mut() {
            for (s, c) in sum.iter_mut().zip(counts) {
                *s = s.saturating_add(*c);
            }
        }
        while self
            .buckets
            .front()
            .is_some_and(|(m, _)| m + (MINUTES as u64) <= minute)
        {
            self.buckets.pop_front();
        }
    }

    /// Each minute's counts from `first` to `last` (inclusive), zeros where nothing came.
    pub fn per_minute(&self, first: u64, last: u64) -> Vec<[u64; N]> {
        let mut out = vec![[0; N]; last.saturating_sub(first) as usize + 1];
        for (m, counts) in self
            .buckets
            .iter()
            .filter(|(m, _)| (first..=last).contains(m))
        {
            out[(m - first) as usize] = *counts;
        }
        out
    }

    /// The counts summed over the minutes from `first` to `last` (inclusive).
    pub fn sum(&self, first: u64, last: u64) -> [u64; N] {
        let mut sum = [0u64; N];
        for (_, counts) in self
            .buckets
            .iter()
            .filter(|(m, _)| (first..=last).contains(m))
        {
            for (s, c) in sum.iter_mut().zip(counts) {
                *s = s.saturating_add(*c);
            }
        }
        sum
    }
}

/// One service's last hour, oldest minute first (always [`MINUTES`] points).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ServiceChart {
    pub service: String,
    pub connections_per_min: Vec<u64>,
    pub bytes_per_min: Vec<u64>,
    pub connections_total: u64,
    pub bytes_total: u64,
}

/// What a router's cumulative counters `now` add since its previous report `prev`: the
/// difference; all of `now` when it has no previous figures (a source it had not used) or a
/// counter went down (the agent restarted); nothing when `baseline` (the controller's first
/// report from that router: what it counted before happened at an unknown time). Shared by
/// the traffic charts and the dependency map ([`crate::graph`]).
pub fn counter_delta(prev: Option<&[u64]>, now: &[u64], baseline: bool) -> Vec<u64> {
    match prev {
        Some(p) if p.len() == now.len() && now.iter().zip(p).all(|(n, p)| n >= p) => {
            now.iter().zip(p).map(|(n, p)| n - p).collect()
        }
        None if baseline => vec![0; now.len()],
        _ => now.to_vec(),
    }
}

#[derive(Debug, Default)]
pub struct TrafficBook {
    /// Routers heard from since the controller started (their first report is a baseline).
    known: std::collections::HashSet<NodeName>,
    last: HashMap<(NodeName, String), ServiceTraffic>,
    /// Per service: connections and bytes per minute.
    series: BTreeMap<String, MinuteSeries<2>>,
}

impl TrafficBook {
    /// Take one router's report, made at unix second `now`.
    pub fn report(&mut self, node: &NodeName, reported: &[ServiceTraffic], now: u64) {
        let minute = now / 60;
        // What a router had counted before the controller first heard from it happened at
        // some unknown time: a baseline, not this minute's traffic.
        let baseline = self.known.len() < MAX_SOURCES && self.known.insert(node.clone());
        for t in reported {
            let key = (node.clone(), t.service.clone());
            if !self.last.contains_key(&key) && self.last.len() >= MAX_SOURCES {
                continue;
            }
            if !self.series.contains_key(&t.service) && self.series.len() >= MAX_SERVICES {
                continue;
            }
            let counters = |t: &ServiceTraffic| [t.connections, t.bytes_sent, t.bytes_received];
            let prev = self.last.get(&key).map(counters);
            let d = counter_delta(prev.as_ref().map(|p| &p[..]), &counters(t), baseline);
            let (connections, bytes) = (d[0], d[1].saturating_add(d[2]));
            self.last.insert(key, t.clone());
            self.series
                .entry(t.service.clone())
                .or_default()
                .add(minute, &[connections, bytes]);
        }
    }

    /// A removed router's baselines go (its past traffic stays in the charts).
    pub fn forget_node(&mut self, node: &NodeName) {
        self.last.retain(|(n, _), _| n != node);
        self.known.remove(node);
    }

    /// Every service's last hour at unix second `now`, busiest first.
    pub fn charts(&self, now: u64) -> Vec<ServiceChart> {
        let this_minute = now / 60;
        let first = this_minute + 1 - MINUTES as u64;
        let mut out: Vec<ServiceChart> = self
            .series
            .iter()
            .map(|(service, s)| {
                let minutes = s.per_minute(first, this_minute);
                let connections: Vec<u64> = minutes.iter().map(|m| m[0]).collect();
                let bytes: Vec<u64> = minutes.iter().map(|m| m[1]).collect();
                ServiceChart {
                    service: service.clone(),
                    connections_total: connections.iter().sum(),
                    bytes_total: bytes.iter().sum(),
                    connections_per_min: connections,
                    bytes_per_min: bytes,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (b.connections_total, b.bytes_total)
                .cmp(&(a.connections_total, a.bytes_total))
                .then_with(|| a.service.cmp(&b.service))
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(n: &str) -> NodeName {
        NodeName::new(n).expect("node name")
    }

    fn t(service: &str, connections: u64, sent: u64, received: u64) -> ServiceTraffic {
        ServiceTraffic {
            service: service.into(),
            connections,
            bytes_sent: sent,
            bytes_received: received,
        }
    }

    const T0: u64 = 1_800_000_000 / 60 * 60;

    #[test]
    fn differences_land_in_their_minute_and_the_first_report_is_a_baseline() {
        let mut book = TrafficBook::default();
        book.report(&node("attic"), &[t("nas", 10, 1_000, 9_000)], T0);
        book.report(&node("attic"), &[t("nas", 13, 1_300, 9_900)], T0 + 30);
        book.report(&node("garage"), &[], T0 + 40);
        book.report(&node("garage"), &[t("nas", 2, 50, 50)], T0 + 70);
        let charts = book.charts(T0 + 70);
        assert_eq!(charts.len(), 1);
        let nas = &charts[0];
        assert_eq!(nas.connections_per_min.len(), MINUTES);
        assert_eq!(
            nas.connections_per_min[MINUTES - 2],
            3,
            "attic's 3 in the first minute"
        );
        assert_eq!(nas.bytes_per_min[MINUTES - 2], 1_200);
        assert_eq!(
            nas.connections_per_min[MINUTES - 1],
            2,
            "garage's first 2 in the next (its earlier report had no nas entry)"
        );
        assert_eq!(nas.connections_total, 5);
        assert_eq!(nas.bytes_total, 1_300);
    }

    #[test]
    fn a_restarted_agent_counts_from_zero_and_old_minutes_age_out() {
        let mut book = TrafficBook::default();
        book.report(&node("attic"), &[t("nas", 100, 0, 0)], T0);
        book.report(&node("attic"), &[t("nas", 4, 10, 10)], T0 + 10);
        assert_eq!(book.charts(T0 + 10)[0].connections_total, 4);
        // An hour later that minute is gone.
        assert_eq!(book.charts(T0 + 3_600)[0].connections_total, 0);
        book.report(&node("attic"), &[t("nas", 5, 10, 10)], T0 + 3_600);
        assert_eq!(book.charts(T0 + 3_600)[0].connections_total, 1);
    }

    #[test]
    fn the_book_is_bounded_and_busiest_first() {
        let mut book = TrafficBook::default();
        for i in 0..(MAX_SERVICES + 10) {
            book.report(&node("attic"), &[t(&format!("s{i}"), 0, 0, 0)], T0);
        }
        book.report(&node("attic"), &[t("s5", 7, 0, 0)], T0 + 1);
        let charts = book.charts(T0 + 1);
        assert_eq!(charts.len(), MAX_SERVICES);
        assert_eq!(charts[0].service, "s5");
    }
}
