# The reference tools the schemas are defined by, pinned to the exact
# versions (what `mpk pack --backend tools` accepts): erofs-utils 1.5
# (`modelwrap-v1`), erofs-utils 1.8.6 (`modelwrap-v2`) and cryptsetup 2.6.1
# (both; Modelwrap's schema-2 image has 2.7.5, whose verity output is the
# same), built from the original source tarballs. The pins (SRI `hash`, the
# hex sha256 beside each) are the ones Debian's .dsc files record for these
# .orig.tar.gz files (bookworm's erofs-utils_1.5-1.dsc,
# cryptsetup_2.6.1-4~deb12u2.dsc; trixie's erofs-utils_1.8.6-1.dsc), so the
# URLs are Debian's pool copies of the upstream tarballs.
{
  lib,
  stdenv,
  fetchurl,
  autoreconfHook,
  pkg-config,
  gettext,
  lz4,
  libuuid,
  lvm2,
  json_c,
  openssl,
  popt,
}:
{
  erofs-utils = stdenv.mkDerivation {
    pname = "erofs-utils";
    version = "1.5";
    src = fetchurl {
      url = "mirror://debian/pool/main/e/erofs-utils/erofs-utils_1.5.orig.tar.gz";
      # sha256 2310fa4377b566bf943e8eef992db3990f759528d5973e700efe3e4cb115ec23
      hash = "sha256-IxD6Q3e1Zr+UPo7vmS2zmQ91lSjVlz5wDv4+TLEV7CM=";
    };
    nativeBuildInputs = [ autoreconfHook pkg-config ];
    buildInputs = [ lz4 libuuid ];
    # mkfs.erofs / fsck.erofs / dump.erofs only; no FUSE, no SELinux labels.
    configureFlags = [ "--disable-fuse" "--without-selinux" ];
    meta = {
      description = "erofs-utils 1.5 (the mkfs.erofs the modelwrap-v1 layout is defined by)";
      license = lib.licenses.gpl2Plus;
      platforms = [ "x86_64-linux" ];
      mainProgram = "mkfs.erofs";
    };
  };

  erofs-utils-186 = stdenv.mkDerivation {
    pname = "erofs-utils";
    version = "1.8.6";
    src = fetchurl {
      url = "mirror://debian/pool/main/e/erofs-utils/erofs-utils_1.8.6.orig.tar.gz";
      # sha256 5b221dc3fd6d151425b30534ede46fb7a90dc233a8659cba0372796b0a066547
      hash = "sha256-WyIdw/1tFRQlswU07eRvt6kNwjOoZZy6A3J5awoGZUc=";
    };
    nativeBuildInputs = [ autoreconfHook pkg-config ];
    buildInputs = [ lz4 libuuid ];
    # As Debian's 1.8.6-1 (--workers needs multithreading; the worker count
    # never changes an uncompressed image); no FUSE, no SELinux labels.
    configureFlags = [ "--disable-fuse" "--without-selinux" "--enable-multithreading" ];
    meta = {
      description = "erofs-utils 1.8.6 (the mkfs.erofs the modelwrap-v2 layout is defined by)";
      license = lib.licenses.gpl2Plus;
      platforms = [ "x86_64-linux" ];
      mainProgram = "mkfs.erofs";
    };
  };

  cryptsetup = stdenv.mkDerivation {
    pname = "cryptsetup";
    version = "2.6.1";
    src = fetchurl {
      url = "mirror://debian/pool/main/c/cryptsetup/cryptsetup_2.6.1.orig.tar.gz";
      # sha256 b8adeb071bb396a1a8515f1d54b4cc8901a536d0da3f5970971beb2ec8427c17
      hash = "sha256-uK3rBxuzlqGoUV8dVLTMiQGlNtDaP1lwlxvrLshCfBc=";
    };
    # The tarball is a git export (no generated configure).
    nativeBuildInputs = [ autoreconfHook pkg-config gettext ];
    buildInputs = [ lvm2 json_c openssl libuuid popt ];
    configureFlags = [
      "--with-crypto_backend=openssl"
      "--disable-asciidoc"
      "--disable-ssh-token"
      "--disable-blkid"
      "--disable-external-tokens"
    ];
    meta = {
      description = "cryptsetup 2.6.1 (the veritysetup the modelwrap-v1 hash tree is defined by)";
      license = lib.licenses.gpl2Plus;
      platforms = [ "x86_64-linux" ];
      mainProgram = "veritysetup";
    };
  };
}
