// See Cargo.toml: allocation is a large part of a probe's CPU.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(hfbreaker::cli::main(std::env::args().skip(1).collect()));
}
