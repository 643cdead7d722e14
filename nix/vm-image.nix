# lib.mkVmImage: one base image (vm-images/<name>) as Nix. Its output is a
# folder `mpk measure deployment --base` and `mpk build --base` read as it is:
#
#   bzImage         the kernel: the pinned nixpkgs 6.12 LTS kernel with
#                   device-mapper (dm-verity, dm-crypt, dm-init), EROFS,
#                   virtio (PCI, block, console), the XTS/AES/SHA-256 crypto
#                   and the SEV-SNP / TDX guest support built in, so the
#                   initrd loads no modules;
#   initrd          `mpk initrd`: the static `mpk-init` built from this
#                   workspace as /init (+ `modules`, `files`), a reproducible
#                   cpio;
#   OVMF.amdsev.fd  edk2's AmdSev build (OvmfPkg/AmdSev/AmdSevX64.dsc), the
#                   OVMF that publishes the SEV kernel-hashes table, so the
#                   launch measurement covers kernel, initrd and command line;
#   TDVF.fd         only with `tdvf`;
#   image.json      the base-image description (version 1, see
#                   driver/mpk-cli/src/cmd_measure.rs `BaseImage`): every
#                   file above by relative path and the sha256 computed in
#                   this build, the command-line template with @MPK_MODELS@,
#                   and the VM shape.
#
# Every input is pinned by the flake's nixpkgs (kernel source, edk2, Rust
# toolchain) and Cargo.lock; passthru exposes the parts (`kernel`, `initrd`,
# `ovmf`, `init`, `baseName`).
{
  pkgs,
  mpk,
  mpkInit,
}:
let
  inherit (pkgs) lib;

  # Built in (`y`, forced over nixpkgs' common config, which has several of
  # these as modules); the kernel config step fails if one does not stick.
  defaultKernelConfig = with lib.kernel; {
    # device-mapper: dm-verity under every model, dm-crypt under encrypted
    # ones (`:crypt`), dm-init (`dm-mod.create=`).
    MD = yes;
    BLK_DEV_DM = yes;
    DM_INIT = yes;
    DM_VERITY = yes;
    DM_CRYPT = yes;
    EROFS_FS = yes;
    VIRTIO = yes;
    VIRTIO_PCI = yes;
    VIRTIO_BLK = yes;
    VIRTIO_CONSOLE = yes;
    # aes-xts-plain64 (dm-crypt) and sha256 (dm-verity).
    CRYPTO_XTS = yes;
    CRYPTO_ECB = yes;
    CRYPTO_AES = yes;
    CRYPTO_AES_NI_INTEL = yes;
    CRYPTO_SHA256 = yes;
    # The initrd, devtmpfs (mpk-init mounts it), the serial console.
    BLK_DEV_INITRD = yes;
    DEVTMPFS = yes;
    SERIAL_8250 = yes;
    SERIAL_8250_CONSOLE = yes;
    EFI_STUB = yes;
    # Confidential guests: SEV-SNP and TDX, and their attestation drivers
    # (/dev/sev-guest, /dev/tdx_guest).
    VIRT_DRIVERS = yes;
    AMD_MEM_ENCRYPT = yes;
    SEV_GUEST = yes;
    INTEL_TDX_GUEST = yes;
    TDX_GUEST_DRIVER = yes;
  };

  # edk2's AmdSev platform. It embeds a GRUB for SEV secret injection, which
  # a direct kernel boot never runs; an empty grub.efi stands in (as AMD's
  # own AMDSEV scripts do), so no grub-mkimage is needed.
  amdSevOvmf = pkgs.edk2.mkDerivation "OvmfPkg/AmdSev/AmdSevX64.dsc" {
    name = "OVMF-AmdSev";
    nativeBuildInputs = [
      pkgs.nasm
      pkgs.acpica-tools
    ];
    hardeningDisable = [
      "format"
      "stackprotector"
      "pic"
      "fortify"
    ];
    buildConfig = "RELEASE";
    postPatch = ''
      touch OvmfPkg/AmdSev/Grub/grub.efi
    '';
  };
in
{
  # The folder name under vm-images/ (also the `<base>` of
  # `<commit>.<base>.deployment.json`).
  name,
  # The VM shape, as in image.json.
  vcpus,
  vcpu_type,
  guest_features ? 1,
  memory_mb,
  gpus ? 0,
  # The command-line template, holding @MPK_MODELS@ exactly once.
  cmdline ? "console=ttyS0 panic=-1 @MPK_MODELS@",
  # The kernel package set; its kernel is rebuilt with the config above.
  kernelPackages ? pkgs.linuxPackages_6_12,
  # Extra structuredExtraConfig entries (e.g. `{ FOO = lib.kernel.yes; }`),
  # over the defaults above.
  kernelConfig ? { },
  # A ready kernel derivation holding `bzImage` (instead of the above).
  kernel ? kernelPackages.kernel.override {
    structuredExtraConfig = builtins.mapAttrs (_: lib.mkForce) (defaultKernelConfig // kernelConfig);
  },
  # A derivation holding FV/OVMF.fd, the AmdSev build.
  ovmf ? amdSevOvmf,
  # A TDVF file (optional) and the MRTD order of the TDX hosts.
  tdvf ? null,
  tdxMrtdOrder ? null,
  # Uncompressed `.ko` files the init loads, in this order (none when the
  # kernel has everything built in).
  modules ? [ ],
  # Extra initrd files: { "/dest/path" = ./src; }.
  files ? { },
  # The static init.
  init ? mpkInit,
}:
let
  initrd = pkgs.runCommand "mpk-initrd-${name}" { nativeBuildInputs = [ mpk ]; } ''
    unset SOURCE_DATE_EPOCH
    mpk initrd --init ${init}/bin/mpk-init \
      ${builtins.concatStringsSep " " (map (m: "--module ${m}") modules)} \
      ${builtins.concatStringsSep " " (map (dest: "--file ${files.${dest}}:${dest}") (builtins.attrNames files))} \
      -o $out
  '';

  ref = file: "{ \"path\": \"${file}\", \"sha256\": \"@sha256:${file}@\" }";
  template =
    ''
      {
        "version": 1,
        "name": ${builtins.toJSON name},
        "snp_ovmf": ${ref "OVMF.amdsev.fd"},
    ''
    + (if tdvf != null then "  \"tdvf\": ${ref "TDVF.fd"},\n" else "")
    + (if tdxMrtdOrder != null then "  \"tdx_mrtd_order\": ${builtins.toJSON tdxMrtdOrder},\n" else "")
    + ''
        "kernel": ${ref "bzImage"},
        "initrd": ${ref "initrd"},
        "cmdline": ${builtins.toJSON cmdline},
        "vcpus": ${toString vcpus},
        "vcpu_type": ${builtins.toJSON vcpu_type},
        "guest_features": ${toString guest_features},
        "memory_mb": ${toString memory_mb},
        "gpus": ${toString gpus}
      }
    '';
  outFiles = [ "OVMF.amdsev.fd" "bzImage" "initrd" ] ++ (if tdvf != null then [ "TDVF.fd" ] else [ ]);
in
assert
  builtins.length (builtins.split "@MPK_MODELS@" cmdline) == 3
  || throw "mkVmImage ${name}: cmdline must hold @MPK_MODELS@ exactly once";
pkgs.runCommand "vm-image-${name}"
  {
    inherit template;
    passthru = {
      inherit kernel initrd ovmf init;
      baseName = name;
    };
  }
  ''
    mkdir -p $out
    cp ${kernel}/bzImage $out/bzImage
    cp ${ovmf}/FV/OVMF.fd $out/OVMF.amdsev.fd
    cp ${initrd} $out/initrd
    ${if tdvf != null then "cp ${tdvf} $out/TDVF.fd" else ""}
    chmod 0444 $out/*
    printf '%s' "$template" > image.json
    for f in ${builtins.concatStringsSep " " outFiles}; do
      sum=$(sha256sum "$out/$f" | cut -d' ' -f1)
      sed -i "s|@sha256:$f@|$sum|" image.json
    done
    if grep -q '@sha256:' image.json; then
      echo "image.json: unfilled sha256" >&2
      exit 1
    fi
    cp image.json $out/image.json
  ''
