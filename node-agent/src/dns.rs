//! DNS for the mesh zone: `<service>.trellis.home.arpa` → the service's virtual IP.
//!
//! dnsmasq on the router stays the LAN's resolver and forwards only the mesh zone here
//! (`server=/trellis.home.arpa/127.0.0.1#5354`, see `firmware/`), so this server answers one
//! zone and nothing else:
//! - `A` for a catalog service → its virtual IP, TTL [`TTL`] (short: a service removed from the
//!   catalog disappears within half a minute);
//! - `AAAA` (or any other type) for a catalog service → NOERROR with no answer: virtual IPs
//!   are IPv4 only, and NODATA tells the client to use the A record instead of failing;
//! - a name in the zone that is not a service → NXDOMAIN; a name outside it → REFUSED.
//!
//! Queries are parsed by hand (no DNS crate: 300 lines beat a resolver library on flash) with
//! strict bounds: at most [`MAX_QUERY`] bytes, exactly one question, no compression pointers in
//! it; anything else gets FORMERR or is dropped. Answers are at most ~80 bytes, well under
//! the 512-byte UDP limit, so no truncation logic is needed.
//!
//! Entry point for the lead:
//! `dns::serve(UdpSocket::bind("127.0.0.1:5354").await?, catalog_rx).await` where
//! `catalog_rx: watch::Receiver<Arc<Catalog>>` follows the snapshot.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::watch;
use trellis_proto::catalog::{self, Catalog, MESH_ZONE};

/// Seconds an answer may be cached.
pub const TTL: u32 = 30;
/// Largest query accepted; real queries are well under 300 bytes even with EDNS.
pub const MAX_QUERY: usize = 512;

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rcode {
    NoError = 0,
    FormErr = 1,
    NxDomain = 3,
    NotImp = 4,
    Refused = 5,
}

struct Question {
    /// Lowercased, dot-separated, no trailing dot.
    name: String,
    qtype: u16,
    qclass: u16,
    /// Offset just past the question in the query.
    end: usize,
}

fn parse_question(q: &[u8]) -> Option<Question> {
    let mut i = 12;
    let mut labels: Vec<String> = Vec::new();
    let mut total = 0usize;
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        // 0xC0 compression pointers (and the reserved 0x40/0x80 forms) never appear in a
        // question a stub sends; refusing them avoids pointer loops entirely.
        if len > 63 {
            return None;
        }
        total += len + 1;
        if total > 255 {
            return None;
        }
        let label = q.get(i..i + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*q.get(i + 2)?, *q.get(i + 3)?]);
    Some(Question {
        name: labels.join("."),
        qtype,
        qclass,
        end: i + 4,
    })
}

fn header(query: &[u8], rcode: Rcode, qd: u16, an: u16) -> Vec<u8> {
    let mut r = Vec::with_capacity(96);
    r.extend_from_slice(&query[0..2]); // ID
    let rd = query[2] & 0x01;
    // QR=1, opcode 0, AA=1 (authoritative for our zone), RD copied; RA=0.
    r.push(0x80 | 0x04 | rd);
    r.push(rcode as u8);
    r.extend_from_slice(&qd.to_be_bytes());
    r.extend_from_slice(&an.to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]); // NS, AR
    r
}

/// The response to one query, or `None` when it should be dropped (too short to answer, or
/// itself a response: answering responses would let two servers loop).
pub fn answer(query: &[u8], catalog: &Catalog) -> Option<Vec<u8>> {
    if query.len() < 12 || query.len() > MAX_QUERY || query[2] & 0x80 != 0 {
        return None;
    }
    let opcode = (query[2] >> 3) & 0x0f;
    if opcode != 0 {
        return Some(header(query, Rcode::NotImp, 0, 0));
    }
    let qdcount = u16::from_be_bytes([query[4], query[5]]);
    let Some(q) = (qdcount == 1).then(|| parse_question(query)).flatten() else {
        return Some(header(query, Rcode::FormErr, 0, 0));
    };
    let in_zone = q.name == MESH_ZONE || q.name.ends_with(&format!(".{MESH_ZONE}"));
    let rcode_only = |rcode| {
        let mut r = header(query, rcode, 1, 0);
        r.extend_from_slice(&query[12..q.end]);
        r
    };
    if !in_zone || q.qclass != CLASS_IN {
        return Some(rcode_only(Rcode::Refused));
    }
    if q.name == MESH_ZONE {
        return Some(rcode_only(Rcode::NoError));
    }
    let Some(svc) = catalog::service_label(&q.name).and_then(|l| catalog.by_name(&l)) else {
        return Some(rcode_only(Rcode::NxDomain));
    };
    if q.qtype != TYPE_A {
        return Some(rcode_only(Rcode::NoError));
    }
    let mut r = header(query, Rcode::NoError, 1, 1);
    r.extend_from_slice(&query[12..q.end]);
    r.extend_from_slice(&[0xc0, 0x0c]); // name: pointer to the question
    r.extend_from_slice(&TYPE_A.to_be_bytes());
    r.extend_from_slice(&CLASS_IN.to_be_bytes());
    r.extend_from_slice(&TTL.to_be_bytes());
    r.extend_from_slice(&4u16.to_be_bytes());
    r.extend_from_slice(&svc.vip.octets());
    Some(r)
}

/// Answer queries on `sock` until the socket fails, always from the latest catalog.
pub async fn serve(sock: UdpSocket, catalog: watch::Receiver<Arc<Catalog>>) -> std::io::Result<()> {
    let mut buf = [0u8; MAX_QUERY + 1];
    loop {
        let (n, from) = sock.recv_from(&mut buf).await?;
        let cat = catalog.borrow().clone();
        if let Some(resp) = answer(&buf[..n], &cat) {
            // A send error concerns one client (e.g. ICMP unreachable); keep serving.
            let _ = sock.send_to(&resp, from).await;
        }
    }
}

/// Build a query (tests, and `trellis-agent` self-checks).
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_proto::catalog::LearnedVia;
    use trellis_proto::HomeId;

    fn catalog() -> Catalog {
        let mut c = Catalog::default();
        c.add(
            &HomeId::new("h").unwrap(),
            "nas",
            vec![],
            vec![],
            LearnedVia::Mdns,
        )
        .unwrap();
        c
    }

    fn rcode(r: &[u8]) -> u8 {
        r[3] & 0x0f
    }

    #[test]
    fn a_record_for_a_service_is_its_virtual_ip() {
        let c = catalog();
        let vip = c.by_name("nas").unwrap().vip;
        let r = answer(&query(0xbeef, "NAS.trellis.home.arpa.", 1), &c).unwrap();
        assert_eq!(&r[0..2], &[0xbe, 0xef]);
        assert_eq!(r[2] & 0x80, 0x80, "QR set");
        assert_eq!(r[2] & 0x04, 0x04, "authoritative");
        assert_eq!(rcode(&r), 0);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[r.len() - 4..], &vip.octets());
        let ttl = u32::from_be_bytes(r[r.len() - 10..r.len() - 6].try_into().unwrap());
        assert_eq!(ttl, TTL);
    }

    #[test]
    fn unknown_names_nxdomain_other_zones_refused_aaaa_nodata() {
        let c = catalog();
        let r = answer(&query(1, "printer.trellis.home.arpa", 1), &c).unwrap();
        assert_eq!(rcode(&r), 3);
        let r = answer(&query(1, "a.nas.trellis.home.arpa", 1), &c).unwrap();
        assert_eq!(rcode(&r), 3);
        let r = answer(&query(1, "example.com", 1), &c).unwrap();
        assert_eq!(rcode(&r), 5);
        let r = answer(&query(1, "nas.trellis.home.arpa", 28), &c).unwrap();
        assert_eq!((rcode(&r), r[7]), (0, 0), "AAAA: NODATA");
        let r = answer(&query(1, "trellis.home.arpa", 1), &c).unwrap();
        assert_eq!((rcode(&r), r[7]), (0, 0));
    }

    #[test]
    fn malformed_queries_get_formerr_or_are_dropped() {
        let c = catalog();
        assert!(answer(&[0u8; 5], &c).is_none(), "too short");
        let mut resp = query(1, "nas.trellis.home.arpa", 1);
        resp[2] |= 0x80;
        assert!(answer(&resp, &c).is_none(), "a response is never answered");
        assert!(answer(&vec![0u8; MAX_QUERY + 1], &c).is_none(), "oversized");
        // Compression pointer in the question.
        let mut q = query(1, "nas.trellis.home.arpa", 1);
        q[12] = 0xc0;
        assert_eq!(rcode(&answer(&q, &c).unwrap()), 1);
        // Truncated question.
        let q = query(1, "nas.trellis.home.arpa", 1);
        assert_eq!(rcode(&answer(&q[..q.len() - 3], &c).unwrap()), 1);
        // Two questions.
        let mut q = query(1, "nas.trellis.home.arpa", 1);
        q[5] = 2;
        assert_eq!(rcode(&answer(&q, &c).unwrap()), 1);
        // Opcode STATUS.
        let mut q = query(1, "nas.trellis.home.arpa", 1);
        q[2] |= 2 << 3;
        assert_eq!(rcode(&answer(&q, &c).unwrap()), 4);
    }

    #[tokio::test]
    async fn serves_over_udp_and_follows_catalog_updates() {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = sock.local_addr().unwrap();
        let (tx, rx) = watch::channel(Arc::new(Catalog::default()));
        tokio::spawn(serve(sock, rx));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let ask = |name: &'static str| {
            let client = &client;
            async move {
                client.send_to(&query(7, name, 1), addr).await.unwrap();
                let mut buf = [0u8; 512];
                let (n, _) = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    client.recv_from(&mut buf),
                )
                .await
                .expect("DNS answer")
                .unwrap();
                buf[..n].to_vec()
            }
        };
        assert_eq!(rcode(&ask("nas.trellis.home.arpa").await), 3);
        tx.send(Arc::new(catalog())).unwrap();
        let r = ask("nas.trellis.home.arpa").await;
        assert_eq!(rcode(&r), 0);
        assert_eq!(r[7], 1);
    }
}
