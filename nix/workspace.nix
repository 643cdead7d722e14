# What every Rust package of this workspace is built from: the workspace
# version, the source (only what cargo needs; tests/ for the test suite's
# fixtures, so an edit to the flake or a model lock rebuilds nothing) and
# Cargo.lock, whose checksums pin every crate as a fixed-output fetch (no
# opaque vendor hash). Shared by nix/package.nix and nix/guest-init.nix.
{ lib }:
{
  inherit ((builtins.fromTOML (builtins.readFile ../Cargo.toml)).workspace.package) version;
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../driver
      ../tests
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;
}
