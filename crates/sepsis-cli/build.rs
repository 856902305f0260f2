//! Records the git commit the binary is built from, for registry versions
//! and tracked runs. Builds outside a git checkout record none.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SEPSIS_GIT_COMMIT");
    if let Ok(commit) = std::env::var("SEPSIS_GIT_COMMIT") {
        println!("cargo:rustc-env=SEPSIS_GIT_COMMIT={commit}");
        return;
    }
    let output = Command::new("git").args(["rev-parse", "HEAD"]).output();
    let Ok(output) = output else { return };
    let commit = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !output.status.success() || commit.len() != 40 {
        return;
    }
    // A changed HEAD or branch tip rebuilds the crate so the commit is current.
    if let Ok(git_dir) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
    {
        let git_dir = String::from_utf8_lossy(&git_dir.stdout).trim().to_string();
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/refs/heads");
    }
    println!("cargo:rustc-env=SEPSIS_GIT_COMMIT={commit}");
}
