//! `cargo xtask demo`: a demo home on this machine with embedded defaults.
//!
//! Today it runs the control plane for real: a controller, three routers' agents that pair
//! with codes from `trellis pair`, follow the config and renew their certificates. It stays
//! up until Ctrl-C and prints what to try. (Network namespaces, services and the web page join
//! the demo as those features land.)
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{cargo, output, root};

const ROUTERS: &[&str] = &["living-room", "attic", "garage"];

struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn run(args: &[String]) -> Result<()> {
    let once = args.iter().any(|a| a == "--once");
    crate::run(cargo().args(["build", "--workspace", "--bins"]))?;
    let bin = root().join("target/debug");
    let home = std::env::temp_dir().join("trellis-demo");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home)?;
    let socket = home.join("admin.sock");
    let trellis = home.join("trellis");
    std::os::unix::fs::symlink(bin.join("trellis-controller"), &trellis)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let api = format!("127.0.0.1:{port}");

    let mut running = Running(Vec::new());
    running.0.push(
        Command::new(bin.join("trellis-controller"))
            .arg("--data-dir")
            .arg(home.join("controller"))
            .arg("--admin-socket")
            .arg(&socket)
            .args(["--agent-api", &api])
            .stderr(log_file(&home, "controller")?)
            .spawn()
            .context("starting trellis-controller")?,
    );
    wait_for(
        || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
        "the controller",
    )?;
    println!(
        "controller up: agent API https://{api}, admin socket {}",
        socket.display()
    );

    // `trellis --socket <demo socket> <args>`, as a person would type it on the router.
    let ctl = |args: &[&str]| {
        output(
            Command::new(&trellis)
                .arg("--socket")
                .arg(&socket)
                .args(args),
        )
    };
    for router in ROUTERS {
        let code = ctl(&["pair", "--json"])?;
        let code = code
            .split('"')
            .nth(3)
            .context("trellis pair --json printed no code")?
            .to_owned();
        let state = home.join(router);
        let joined = output(
            Command::new(bin.join("trellis-agent"))
                .arg("--state-dir")
                .arg(&state)
                .args(["join", &api, &code, "--name", router]),
        )?;
        print!("{router}: pairing code {code} -> {joined}");
        running.0.push(
            Command::new(bin.join("trellis-agent"))
                .arg("--state-dir")
                .arg(&state)
                .arg("run")
                .stderr(log_file(&home, router)?)
                .spawn()?,
        );
    }
    wait_for(
        || {
            ctl(&["nodes"])
                .map(|s| s.lines().filter(|l| l.contains(" s ago")).count() == ROUTERS.len())
                .unwrap_or(false)
        },
        "every agent to report in",
    )?;
    println!();
    print!("{}", ctl(&["status"])?);
    println!();
    print!("{}", ctl(&["nodes"])?);
    if once {
        return Ok(());
    }
    println!(
        "\nThe demo home runs until Ctrl-C. Try, in another shell:\n  {t} --socket {s} nodes\n  {t} --socket {s} remove-node garage\n  {t} --socket {s} pair\nLogs: {h}/*.log",
        t = trellis.display(),
        s = socket.display(),
        h = home.display()
    );
    let mut first = running.0.remove(0);
    let status = first.wait()?;
    bail!(
        "the controller exited ({status}); see {}",
        home.join("controller.log").display()
    )
}

fn log_file(home: &Path, name: &str) -> Result<Stdio> {
    let path: PathBuf = home.join(format!("{name}.log"));
    Ok(Stdio::from(std::fs::File::create(path)?))
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if Instant::now() > deadline {
            bail!("gave up waiting for {what} after 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}
