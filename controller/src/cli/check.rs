//! `trellis check`: every finding of [`crate::check`] with its fix, and an exit code that
//! says the worst (0 fine, 3 controller unreachable, 4 warnings, 5 failures).

use std::process::ExitCode;

use hyper::Method;
use trellis_io::client::ClientError;
use trellis_proto::api::NodeInfo;

use super::{call, installed_as_service, Cli};

/// `trellis check`: every finding with its fix; the exit code says the worst.
pub(super) fn check(
    cli: &Cli,
    wpa: &std::path::Path,
    runtime: &tokio::runtime::Runtime,
) -> ExitCode {
    use crate::check::{self as diag, Finding, Level};
    let none: Option<&()> = None;
    let now = crate::ca::unix_now();
    let fetched = runtime.block_on(async {
        let nodes: Vec<NodeInfo> = call(cli, Method::GET, "/v1/admin/nodes", none).await?;
        let links: Vec<trellis_proto::api::TopologyLink> =
            call(cli, Method::GET, "/v1/admin/topology", none).await?;
        Ok::<_, ClientError>((nodes, links))
    });
    let mut findings: Vec<Finding> = Vec::new();
    let mut unreachable = false;
    let mut wifi_mesh = true;
    match fetched {
        Ok((nodes, links)) => {
            findings.push(Finding {
                level: Level::Ok,
                what: format!("controller answers on {}", cli.socket.display()),
                fix: String::new(),
            });
            findings.extend(diag::certificates(&nodes));
            findings.extend(diag::clocks(&nodes, now));
            findings.extend(diag::mesh_links(&nodes, &links));
            findings.extend(diag::home_wifi(&nodes));
            wifi_mesh = diag::wifi_mesh_needed(&nodes, &links);
        }
        Err(e) => {
            unreachable = true;
            findings.push(Finding {
                level: Level::Fail,
                what: format!("the controller does not answer on {}: {e}", cli.socket.display()),
                fix: if installed_as_service() {
                    "start it: /etc/init.d/trellis-controller start; logread -e trellis says why it stopped".into()
                } else {
                    format!("start it: trellis-controller --admin-socket {} (its log says why it stopped)", cli.socket.display())
                },
            });
        }
    }
    findings.push(if wifi_mesh {
        diag::wpa_supplicant(wpa)
    } else {
        Finding {
            level: Level::Ok,
            what: "every router is linked by cable: no wifi mesh, wpa_supplicant not needed".into(),
            fix: String::new(),
        }
    });
    findings.push(diag::mdns_port());
    if cli.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings).unwrap_or_default()
        );
    } else {
        for f in &findings {
            let tag = match f.level {
                Level::Ok => "ok  ",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            println!("{tag} {}", f.what);
            if !f.fix.is_empty() {
                println!("     fix: {}", f.fix);
            }
        }
    }
    let worst = findings.iter().map(|f| f.level).max().unwrap_or(Level::Ok);
    match (unreachable, worst) {
        (true, _) => ExitCode::from(3),
        (_, Level::Fail) => ExitCode::from(5),
        (_, Level::Warn) => ExitCode::from(4),
        _ => ExitCode::SUCCESS,
    }
}
