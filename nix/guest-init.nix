# The guest init `mpk-init`, built static (call it with pkgsStatic's
# callPackage: musl, crt-static) from this workspace and Cargo.lock alone, for
# the base images' initrds (nix/vm-image.nix). Like nix/package.nix: every
# crate a fixed-output fetch pinned by Cargo.lock's checksum (source and
# version: nix/workspace.nix).
{ lib, rustPlatform }:
rustPlatform.buildRustPackage (
  import ./workspace.nix { inherit lib; }
  // {
    pname = "mpk-init";
    cargoBuildFlags = [ "-p" "mpk-guest" "--bin" "mpk-init" ];
    # The guest's tests boot QEMU (driver/mpk-guest/tests/qemu.rs); not here.
    doCheck = false;
    meta = {
      description = "mpk's guest init: maps .mpk models through dm-verity from the measured kernel command line";
      license = with lib.licenses; [ mit asl20 ];
      platforms = [ "x86_64-linux" ];
      mainProgram = "mpk-init";
    };
  }
)
