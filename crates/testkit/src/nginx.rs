//! nginx serving a small static `/health`: a target that costs the prober
//! as little as a real server can, for the probe cost bench.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::proc::Proc;
use crate::tools::free_port;

/// Start `bin` (nginx) on a loopback port, serving `GET /health` (3 bytes,
/// `ok\n`) from a fresh folder. One process (`master_process off`), so the
/// [`Proc`] guard's kill stops all of it. Returns once it accepts
/// connections; its [`Proc::base`] is the server's base URL.
pub fn start_nginx(bin: &Path) -> std::io::Result<Proc> {
    let dir = tempfile::tempdir()?;
    let root = dir.path();
    std::fs::create_dir_all(root.join("www"))?;
    std::fs::create_dir_all(root.join("tmp"))?;
    std::fs::write(root.join("www/health"), "ok\n")?;
    let port = free_port();
    let d = root.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log stderr warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n  access_log off;\n  keepalive_requests 1000000;\n\
         client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
         uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
         server {{ listen 127.0.0.1:{port}; root {d}/www; location = /health {{ }} }}\n}}\n"
    );
    let cfg = root.join("nginx.conf");
    std::fs::write(&cfg, conf)?;
    let mut cmd = Command::new(bin);
    // -e: the error log before the config is read (the packaged default is
    // under /var/log, which may not be writable).
    cmd.arg("-e")
        .arg("stderr")
        .arg("-p")
        .arg(root)
        .arg("-c")
        .arg(&cfg);
    let mut p = Proc::spawn(&mut cmd, Some(dir), Some(cfg))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    p.set_addr(addr);
    let start = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if p.exited() || start.elapsed() > Duration::from_secs(10) {
            return Err(std::io::Error::other(format!(
                "nginx did not start:\n{}",
                p.stderr()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(p)
}
