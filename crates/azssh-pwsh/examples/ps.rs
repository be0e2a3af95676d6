//! Runs a script (argv[1]) against a TestHost and prints the outcome; `--tree` dumps the syntax tree.
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let script = args.get(1).cloned().unwrap_or_default();
    if args.iter().any(|a| a == "--tree") {
        let mut p = tree_sitter::Parser::new();
        let _ = p.set_language(&tree_sitter_powershell::LANGUAGE.into());
        if let Some(t) = p.parse(&script, None) {
            println!("{}", t.root_node().to_sexp());
        }
    }
    let mut h = pwsh::TestHost::new();
    let o = pwsh::run(&mut h, &script, &[]);
    println!(
        "--- stdout\n{}--- stderr\n{}--- exit {}",
        o.stdout, o.stderr, o.exit_code
    );
    println!("{:?}", pwsh::check_ps51(&script));
}
