# The `mpk` driver, built by nixpkgs' Rust builder from Cargo.lock alone (no
# opaque vendor hash: every crate is a fixed-output fetch pinned by the
# checksum in Cargo.lock; source and version: nix/workspace.nix).
{ lib, rustPlatform }:
rustPlatform.buildRustPackage (
  import ./workspace.nix { inherit lib; }
  // {
    pname = "mpk";
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
)
