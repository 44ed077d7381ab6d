//! `trellis` commands about the home and its routers: status, the routers and their pairing
//! and removal, the mesh links and channel, speed tests between routers, the event log, the
//! CA backup and the page's setup token.

use trellis_proto::api::{
    CaBackup, CertHealth, NewPairingCode, NewSpeedTest, NodeInfo, RemovedNode, SpeedTest,
    SpeedTestState, Status,
};

use crate::channel::cli::ChannelChange;
use hyper::Method;
use trellis_io::client::ClientError;

use super::{ago, bad, call, show, Cli};

pub(super) async fn status(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let now = crate::ca::unix_now();
    let s: Status = call(cli, Method::GET, "/v1/admin/status", none).await?;
    Ok(show(cli, &s, |s| {
        format!(
            "home:            {}\nconfig version:  {}\nrouters:         {}\nagent API:       {}\nroot CA expires: in {} days\ncontroller:      {}\n",
            s.home_id,
            s.config_version,
            s.nodes,
            if s.agent_api.is_empty() { "(the address satellites paired with)" } else { &s.agent_api },
            s.ca_not_after.saturating_sub(now) / 86400,
            s.controller_version
        )
    }))
}

pub(super) async fn nodes(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let now = crate::ca::unix_now();
    let nodes: Vec<NodeInfo> = call(cli, Method::GET, "/v1/admin/nodes", none).await?;
    Ok(show(cli, &nodes, |nodes| {
        if nodes.is_empty() {
            return "no routers yet: run `trellis pair` and then `trellis-agent join` on the satellite\n".into();
        }
        let mut out = format!(
            "{:<20} {:<10} {:<14} {:<10} {:<10} {}\n",
            "NAME", "STATE", "CERT EXPIRES", "CONFIG", "MESH HOPS", "LAST SEEN"
        );
        for n in nodes {
            let state = if n.revoked { "removed" } else { "enrolled" };
            let hops = match (n.portal, n.hops) {
                (true, _) => "portal".to_owned(),
                (false, Some(h)) => h.to_string(),
                (false, None) => "-".to_owned(),
            };
            let cert = match (n.cert_health, n.cert_not_after) {
                (Some(CertHealth::Expired { .. }), _) => "EXPIRED".into(),
                (Some(CertHealth::RenewalLate { .. }), Some(t)) => {
                    format!("in {} LATE", ago(t, now))
                }
                (_, Some(t)) => format!("in {}", ago(t, now)),
                (_, None) => "-".into(),
            };
            let seen = n
                .last_seen_s
                .map(|s| format!("{s} s ago"))
                .unwrap_or_else(|| "-".into());
            out += &format!(
                "{:<20} {:<10} {:<14} v{:<9} {:<10} {}\n",
                n.name.as_str(),
                state,
                cert,
                n.acked_version,
                hops,
                seen
            );
        }
        out
    }))
}

pub(super) async fn pair(cli: &Cli, this_router: bool) -> Result<String, ClientError> {
    let req = trellis_proto::api::NewPairingCodeRequest { this_router };
    let code: NewPairingCode =
        call(cli, Method::POST, "/v1/admin/pairing-codes", Some(&req)).await?;
    Ok(show(cli, &code, |c| {
        format!(
            "pairing code: {}\nvalid for {} minutes, single use. On the satellite run:\n  trellis-agent join <this router's address> {}\n",
            c.code,
            c.expires_in_s / 60,
            c.code
        )
    }))
}

pub(super) async fn remove_node(cli: &Cli, name: &str) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let removed: RemovedNode = call(
        cli,
        Method::DELETE,
        &format!("/v1/admin/nodes/{name}"),
        none,
    )
    .await?;
    Ok(show(cli, &removed, |r| {
        format!(
            "removed {}: its identity is revoked from config version {} on\n",
            r.identity, r.config_version
        )
    }))
}

pub(super) async fn setup_token(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let v: serde_json::Value = call(cli, Method::GET, "/v1/admin/setup-token", none).await?;
    Ok(show(cli, &v, |v| {
        format!(
            "{}\nType it on the router page (https://<this router>:7443/) to set the admin password.\n",
            v["setup_token"].as_str().unwrap_or_default()
        )
    }))
}

pub(super) async fn reset_password(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let v: serde_json::Value = call(cli, Method::DELETE, "/v1/admin/web-password", none).await?;
    Ok(show(cli, &v, |v| {
        format!(
            "The web page's password was reset and everyone was logged out.\nSetup token: {}\nOpen the router page to set a new password with it.\n",
            v["setup_token"].as_str().unwrap_or_default()
        )
    }))
}

pub(super) async fn channel(
    cli: &Cli,
    change: Option<&ChannelChange>,
) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let now = crate::ca::unix_now();
    let view = match crate::channel::cli::request(change) {
        None => call(cli, Method::GET, "/v1/admin/channel", none).await?,
        Some(req) => call(cli, Method::POST, "/v1/admin/channel", Some(&req)).await?,
    };
    Ok(show(cli, &view, |v| {
        crate::channel::cli::render(v, change, now)
    }))
}

pub(super) async fn topology(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let now = crate::ca::unix_now();
    let links: Vec<trellis_proto::api::TopologyLink> =
        call(cli, Method::GET, "/v1/admin/topology", none).await?;
    Ok(show(cli, &links, |ls| {
        if ls.is_empty() {
            return "no mesh links reported yet (routers report every 30 s once trellis-agent mesh runs)\n".into();
        }
        let mut out = format!(
            "{:<16} {:<18} {:<5} {:>8} {:>10} {:>17} {:>7} {:<9} {}\n",
            "FROM", "TO", "VIA", "SIGNAL", "THROUGHPUT", "MEASURED", "METRIC", "QUALITY", "ADVICE"
        );
        for l in ls {
            let dash = || "-".to_string();
            out += &format!(
                "{:<16} {:<18} {:<5} {:>8} {:>10} {:>17} {:>7} {:<9} {}\n",
                l.from.as_str(),
                l.to,
                l.medium.as_str(),
                l.signal_dbm
                    .map(|s| format!("{s} dBm"))
                    .unwrap_or_else(dash),
                l.expected_throughput_kbps
                    .map(|t| format!("{} Mb/s", t / 1000))
                    .unwrap_or_else(dash),
                l.measured
                    .as_ref()
                    .map(|m| format!(
                        "{} Mb/s {} ago",
                        m.bits_per_second / 1_000_000,
                        ago(now, m.at)
                    ))
                    .unwrap_or_else(dash),
                l.airtime_metric.map(|m| m.to_string()).unwrap_or_else(dash),
                l.verdict.as_str(),
                l.advice.join("; ")
            );
        }
        out
    }))
}

pub(super) async fn speedtest(
    cli: &Cli,
    from: Option<&str>,
    to: Option<&str>,
    seconds: u32,
    list: bool,
) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let now = crate::ca::unix_now();
    if list {
        let tests: Vec<SpeedTest> = call(cli, Method::GET, "/v1/admin/speedtests", none).await?;
        return Ok(show(cli, &tests, |ts| {
            if ts.is_empty() {
                return "no speed tests since the controller started\n".into();
            }
            ts.iter()
                .map(|t| {
                    format!(
                        "{:>8} ago  {}\n",
                        ago(now, t.requested_at),
                        speedtest_line(t)
                    )
                })
                .collect()
        }));
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(bad(
            "name the sending and the receiving router: trellis speedtest FROM TO (see trellis nodes)",
        ));
    };
    let req = NewSpeedTest {
        from: from
            .parse()
            .map_err(|e: trellis_proto::identity::IdentityError| bad(e.to_string()))?,
        to: to
            .parse()
            .map_err(|e: trellis_proto::identity::IdentityError| bad(e.to_string()))?,
        seconds: Some(seconds),
    };
    let mut test: SpeedTest = call(cli, Method::POST, "/v1/admin/speedtests", Some(&req)).await?;
    if !cli.json {
        eprintln!(
            "speed test {} → {} queued ({} s)…",
            test.from, test.to, test.seconds
        );
    }
    let mut said_running = false;
    while matches!(test.state, SpeedTestState::Queued | SpeedTestState::Running) {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        test = call(
            cli,
            Method::GET,
            &format!("/v1/admin/speedtests/{}", test.id),
            none,
        )
        .await?;
        if test.state == SpeedTestState::Running && !said_running && !cli.json {
            eprintln!("{} is sending…", test.from);
            said_running = true;
        }
    }
    if test.state == SpeedTestState::Failed {
        return Err(ClientError::Status {
            status: hyper::StatusCode::BAD_GATEWAY,
            message: speedtest_line(&test),
        });
    }
    Ok(show(cli, &test, |t| format!("{}\n", speedtest_line(t))))
}

pub(super) async fn events(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let now = crate::ca::unix_now();
    let events: Vec<crate::home::Event> = call(cli, Method::GET, "/v1/admin/events", none).await?;
    Ok(show(cli, &events, |es| {
        if es.is_empty() {
            return "nothing has happened since the controller started\n".into();
        }
        es.iter()
            .map(|e| format!("{:>8} ago  {:<9} {}\n", ago(now, e.at), e.kind, e.message))
            .collect()
    }))
}

pub(super) async fn ca_backup(cli: &Cli) -> Result<String, ClientError> {
    let none: Option<&()> = None;
    let b: CaBackup = call(cli, Method::GET, "/v1/admin/ca/backup", none).await?;
    Ok(show(cli, &b, |b| {
        format!(
            "# Trellis home {} — keep this file secret\n{}{}",
            b.home_id, b.ca_cert_pem, b.ca_key_pem
        )
    }))
}

/// One line per speed test, in words.
fn speedtest_line(t: &SpeedTest) -> String {
    let what = format!("speed test {} → {}", t.from, t.to);
    match (t.state, t.bits_per_second, &t.error) {
        (SpeedTestState::Done, Some(bps), _) => format!(
            "{what}: {:.1} Mbit/s ({} MB in {} s, timed by {})",
            bps as f64 / 1e6,
            t.bytes.unwrap_or(0) / 1_000_000,
            t.seconds,
            t.to
        ),
        (SpeedTestState::Failed, _, Some(e)) => format!("{what} failed: {e}"),
        (SpeedTestState::Queued, ..) => format!("{what}: waiting for {}", t.from),
        (SpeedTestState::Running, ..) => format!("{what}: running"),
        _ => format!("{what}: {:?}", t.state),
    }
}
