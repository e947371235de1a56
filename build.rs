// Embeds the git revision for hfbreaker_build_info.
fn main() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let rev = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=HFBREAKER_REVISION={rev}");
    // Rerun when HEAD moves: HEAD itself (a checkout) and the branch's ref
    // (a commit). Git names the files: in a worktree `.git` is a file, and a
    // path that does not exist would rerun this script and recompile the
    // crate on every build. Watching the branch's own ref rather than all of
    // refs/heads keeps commits on other branches (other worktrees share
    // refs/heads) from recompiling it; a packed ref falls back to the folder.
    let path = |p: &str| git(&["rev-parse", "--git-path", p]);
    let mut watch = vec![path("HEAD").unwrap_or_else(|| ".git/HEAD".to_string())];
    let branch = git(&["symbolic-ref", "-q", "HEAD"]).and_then(|r| path(&r));
    match branch.filter(|p| std::path::Path::new(p).is_file()) {
        Some(p) => watch.push(p),
        None => watch.extend(path("refs/heads")),
    }
    for p in watch {
        println!("cargo:rerun-if-changed={p}");
    }
}
