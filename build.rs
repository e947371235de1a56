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
    // Rerun when HEAD moves. Git names the files: in a worktree `.git` is a
    // file, and a path that does not exist would make every build rerun
    // this script and recompile the crate.
    for (path, fallback) in [("HEAD", ".git/HEAD"), ("refs/heads", ".git/refs/heads")] {
        let p = git(&["rev-parse", "--git-path", path]).unwrap_or_else(|| fallback.to_string());
        println!("cargo:rerun-if-changed={p}");
    }
}
