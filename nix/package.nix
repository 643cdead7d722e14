# The `mpk` driver, built by nixpkgs' Rust builder from Cargo.lock alone (no
# opaque vendor hash: every crate is a fixed-output fetch pinned by the
# checksum in Cargo.lock).
{ lib, rustPlatform }:
let
  ws = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).workspace.package;
in
rustPlatform.buildRustPackage {
  pname = "mpk";
  inherit (ws) version;
  # Only what cargo needs (tests/ for the test suite's fixtures), so an edit
  # to the flake or a model lock does not rebuild the driver.
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
  cargoBuildFlags = [ "-p" "mpk-cli" ];
  # The test suite runs as its own check (checks.tests) with the pinned tools.
  doCheck = false;
  meta = {
    description = "Verifiable model packs: EROFS + dm-verity, byte-identical to Modelwrap";
    license = with lib.licenses; [ mit asl20 ];
    platforms = [ "x86_64-linux" ];
    mainProgram = "mpk";
  };
}
