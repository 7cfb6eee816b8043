//! `fakevyos`: a multi-call binary standing in for VyOS's configuration tools (in progress).

fn main() {}
