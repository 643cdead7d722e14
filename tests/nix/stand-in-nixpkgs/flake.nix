# A stand-in for nixpkgs, for testing the flake offline (nixpkgs cannot be
# fetched here): `--override-input nixpkgs path:<a copy of this folder>`.
#
# Faithful where the flake depends on nixpkgs' behaviour (written from the
# nixpkgs sources, not copied; what was checked against which version is
# noted at each place):
#   - lib (./lib.nix): callPackage = lib.callPackageWith pkgs, so every
#     result is `makeOverridable`: an attribute set gains `override` and
#     `overrideDerivation` (this is what makes `checks.<system> =
#     callPackage ./nix/checks.nix { }` fail `nix flake check` with "expected
#     a derivation"); isDerivation, filterAttrs, fileset.toSource, …;
#   - stdenv.mkDerivation: `overrideAttrs` (a function of the old
#     attributes, or of final and previous), `passthru` and `meta` kept out of
#     the derivation's environment, `failureHook` run when the build fails;
#   - fetchurl (./fetchurl.nix): its arguments (no `...`), SRI `hash`,
#     `netrcPhase` run from postHook with `--netrc-file $PWD/netrc` added to
#     curlOpts, `netrcImpureEnvVars`, `curlOpts`, `derivationArgs`, and
#     the TLS rule; its result has overrideAttrs (how the flake adds a
#     `failureHook`), like every mkDerivation result;
#   - the aliases nixpkgs 25.11 warns about (`nixfmt-rfc-style`) warn.
#
# Not faithful, on purpose (nothing is compiled, nothing leaves the
# machine). Builds run the host's bash and tools from /usr/bin (no sandbox:
# `--option sandbox false`):
#   - rustPlatform.buildRustPackage (also pkgsStatic's) instantiates from the
#     real `src` (so lib.fileset.toSource runs) but its build copies an
#     already-built binary that the test puts next to this file, named after
#     meta.mainProgram (./mpk, ./mpk-init);
#   - the kernel (linuxPackages_6_12.kernel, overridable, keeping
#     structuredExtraConfig in passthru) is ./bzImage and the AmdSev OVMF
#     (edk2.mkDerivation) is ./OVMF.amdsev.fd, both copied here by the test;
#   - stdenv.mkDerivation of erofs-utils / cryptsetup wraps the host's Debian
#     packages (bookworm ships exactly erofs-utils 1.5 and cryptsetup 2.6.1)
#     after checking their versions; their `src` is instantiated, not built;
#     erofs-utils 1.8.6 (not in bookworm) is ./mkfs.erofs-1.8.6, which the
#     test copies here (Debian trixie's, from $MPK_MKFS_EROFS_186);
#   - other packages are empty placeholders;
#   - fetchurl's builder fetches a https://huggingface.co/ URL from
#     $HF_ENDPOINT when that is set (see ./fetchurl-builder.sh).
{
  outputs =
    { self }:
    let
      system = "x86_64-linux";
      lib = import ./lib.nix;

      # stdenv.mkDerivation (pkgs/stdenv/generic/make-derivation.nix, as of
      # nixpkgs 25.11): a set of attributes or a function of the final
      # attributes; the result has overrideAttrs, its passthru attributes and
      # meta. `builder` defaults to running genericBuild (buildCommand, else
      # buildPhase and installPhase).
      mkDerivation =
        fnOrAttrs:
        let
          rattrs = if builtins.isFunction fnOrAttrs then fnOrAttrs else _: fnOrAttrs;
        in
        makeDerivationExtensible rattrs;

      makeDerivationExtensible =
        rattrs:
        let
          args = rattrs (args // { inherit finalPackage overrideAttrs; });
          overrideAttrs =
            f0:
            let
              f =
                self: super:
                let
                  x = f0 super;
                in
                if builtins.isFunction x then f0 self super else x;
            in
            makeDerivationExtensible (
              self:
              let
                super = rattrs self;
              in
              super // f self super
            );
          env = builtins.removeAttrs args [
            "meta"
            "passthru"
            "pos"
            "finalPackage"
            "overrideAttrs"
            "pname"
            "version"
          ];
          drv = derivation (
            env
            // {
              name = args.name or "${args.pname}-${args.version}";
              inherit system;
              builder = "/bin/bash";
              args = [
                "-e"
                (args.builder or ./stdenv/default-builder.sh)
              ];
              stdenv = ./stdenv;
            }
            // lib.optionalAttrs (args ? pname) { inherit (args) pname; }
            // lib.optionalAttrs (args ? version) { inherit (args) version; }
          );
          finalPackage = lib.extendDerivation true (
            {
              inherit overrideAttrs;
              meta = args.meta or { };
              passthru = args.passthru or { };
            }
            // (args.passthru or { })
          ) drv;
        in
        finalPackage;

      placeholder =
        name:
        mkDerivation {
          inherit name;
          buildCommand = "mkdir -p $out";
        };

      # The host's Debian tool, checked to be the pinned version. `src` is
      # instantiated (its hash and URL evaluated) but not fetched.
      hostTool =
        {
          pname,
          version,
          src,
          bins,
          versionCmd,
        }:
        mkDerivation {
          name = builtins.seq src.drvPath "${pname}-${version}-host";
          buildCommand = ''
            v=$( (${versionCmd}) 2>&1 | head -n1)
            case "$v" in
              *" ${version}"|*" ${version} "*) ;;
              *) echo "host ${pname} is \`$v', not ${version}" >&2; exit 1 ;;
            esac
            mkdir -p $out/bin
            for b in ${builtins.concatStringsSep " " bins}; do
              ln -s "$(command -v $b)" $out/bin/$b
            done
          '';
        };

      hostTools = {
        erofs-utils =
          args:
          if args.version == "1.8.6" then
            mkDerivation {
              name = builtins.seq args.src.drvPath "erofs-utils-1.8.6-host";
              buildCommand = ''
                v=$(${./mkfs.erofs-1.8.6} --version | head -n1)
                [ "$v" = "mkfs.erofs (erofs-utils) 1.8.6" ] || { echo "not 1.8.6: $v" >&2; exit 1; }
                mkdir -p $out/bin
                ln -s ${./mkfs.erofs-1.8.6} $out/bin/mkfs.erofs
              '';
            }
          else
            hostTool {
            inherit (args) pname version src;
            bins = [
              "mkfs.erofs"
              "fsck.erofs"
              "dump.erofs"
            ];
            versionCmd = "mkdir -p e && mkfs.erofs -T0 e.img e";
          };
        cryptsetup =
          args:
          hostTool {
            inherit (args) pname version src;
            bins = [ "veritysetup" ];
            versionCmd = "veritysetup --version";
          };
      };

      # The kernel: ./bzImage whatever the config; overridable as nixpkgs'
      # kernels are (callPackage), structuredExtraConfig kept in passthru.
      standInKernel = lib.makeOverridable (
        {
          structuredExtraConfig ? { },
        }:
        mkDerivation {
          name = "linux-stand-in";
          buildCommand = ''
            mkdir -p $out
            cp ${./bzImage} $out/bzImage
          '';
          passthru = { inherit structuredExtraConfig; };
        }
      ) { };

      pkgs = {
        inherit lib;

        callPackage = lib.callPackageWith pkgs;

        cacert = mkDerivation {
          name = "nss-cacert-stand-in";
          buildCommand = ''
            mkdir -p $out/etc/ssl/certs
            if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
              cp /etc/ssl/certs/ca-certificates.crt $out/etc/ssl/certs/ca-bundle.crt
            else
              : > $out/etc/ssl/certs/ca-bundle.crt
            fi
          '';
        };

        fetchurl = import ./fetchurl.nix {
          inherit lib mkDerivation;
          inherit (pkgs) cacert curl;
        };

        # pkgs/build-support/trivial-builders: runCommand name env command.
        runCommand =
          name: env: buildCommand:
          mkDerivation (
            {
              inherit name buildCommand;
            }
            // env
          );

        stdenv.mkDerivation =
          fnOrAttrs:
          let
            args = if builtins.isFunction fnOrAttrs then fnOrAttrs { } else fnOrAttrs;
          in
          if args ? pname && hostTools ? ${args.pname} then
            hostTools.${args.pname} args
          else
            mkDerivation fnOrAttrs;

        mkShell =
          {
            name ? "nix-shell",
            packages ? [ ],
            inputsFrom ? [ ],
            ...
          }@args:
          mkDerivation (
            builtins.removeAttrs args [
              "packages"
              "inputsFrom"
            ]
            // {
              inherit name;
              nativeBuildInputs = packages;
              inputsFromPaths = map toString inputsFrom;
              buildCommand = "echo 'a shell, not a package' > $out";
            }
          );

        pkgsStatic = pkgs;

        linuxPackages_6_12.kernel = standInKernel;

        edk2.mkDerivation =
          projectDscPath: args:
          mkDerivation {
            inherit (args) name;
            buildCommand = ''
              mkdir -p $out/FV
              cp ${./OVMF.amdsev.fd} $out/FV/OVMF.fd
            '';
            passthru = { inherit projectDscPath; };
          };

        # The real `src` and the flags are in the derivation (so the source
        # is evaluated and copied); cargoLock is consumed as nixpkgs does
        # (here into nothing); the build copies the prebuilt binary.
        rustPlatform.buildRustPackage =
          args:
          mkDerivation (
            builtins.removeAttrs args [ "cargoLock" ]
            // {
              nativeBuildInputs = [
                pkgs.cargo
                pkgs.rustc
              ]
              ++ args.nativeBuildInputs or [ ];
              cargoLockFile = args.cargoLock.lockFile;
              buildCommand = ''
                mkdir -p $out/bin
                cp ${./. + "/${args.meta.mainProgram}"} $out/bin/${args.meta.mainProgram}
                chmod +x $out/bin/${args.meta.mainProgram}
              '';
            }
          );

        # nixpkgs 25.11: `nixfmt` is the RFC 166 formatter; the old name is
        # an alias that warns.
        nixfmt-rfc-style = lib.warn "nixfmt-rfc-style is now the same as pkgs.nixfmt which should be used instead." pkgs.nixfmt;
      }
      // builtins.listToAttrs (
        map
          (n: {
            name = n;
            value = placeholder n;
          })
          [
            "autoreconfHook"
            "pkg-config"
            "gettext"
            "lz4"
            "libuuid"
            "lvm2"
            "json_c"
            "openssl"
            "popt"
            "clippy"
            "rustfmt"
            "cargo"
            "rustc"
            "xfsprogs"
            "e2fsprogs"
            "util-linux"
            "python3"
            "curl"
            "nix"
            "actionlint"
            "nixfmt"
            "nasm"
            "acpica-tools"
          ]
      );
    in
    {
      legacyPackages.${system} = pkgs;
      inherit lib;
    };
}
