# The qemu-snp base image: an AMD SEV-SNP guest under QEMU, direct kernel
# boot (kernel, initrd and command line covered by the launch measurement
# through the AmdSev OVMF's kernel-hashes table). These are the parameters of
# lib.mkVmImage (nix/vm-image.nix); kernel, initrd and OVMF are its pinned
# defaults. `nix build .#vm-image-qemu-snp` writes the folder with image.json.
{
  vcpus = 2;
  vcpu_type = "EPYC-v4";
  # SEV_FEATURES: SNPActive only.
  guest_features = 1;
  memory_mb = 2048;
  cmdline = "console=ttyS0 panic=-1 @MPK_MODELS@ ";
  # Everything the init needs is built into the kernel.
  modules = [ ];
}
