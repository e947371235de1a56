fn main() {
    std::process::exit(hfbreaker::cli::main(std::env::args().skip(1).collect()));
}
