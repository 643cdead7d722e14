# A stand-in for nixpkgs, for testing the flake offline (nixpkgs cannot be
# fetched here): `--override-input nixpkgs path:<a copy of this folder>`.
# It provides just what flake.nix and nix/*.nix call, built on
# builtins.derivation with the host's /bin/sh and /usr/bin (coreutils, curl),
# so builds need `--option sandbox false` (Debian's nix.conf default):
#   - rustPlatform.buildRustPackage (also as pkgsStatic's) wraps an
#     already-built binary that the test copies next to this file, named
#     after the package's meta.mainProgram (./mpk, ./mpk-init); the Rust
#     build itself is not exercised;
#   - the base images' kernel (linuxPackages_6_12.kernel.override, which
#     keeps structuredExtraConfig in passthru) is ./bzImage and the AmdSev
#     OVMF (edk2.mkDerivation) is ./OVMF.amdsev.fd, both copied here by the
#     test; nothing is compiled;
#   - stdenv.mkDerivation of erofs-utils / cryptsetup wraps the host's Debian
#     packages (bookworm ships exactly erofs-utils 1.5 and cryptsetup 2.6.1)
#     after checking their versions; other packages are empty placeholders;
#   - fetchurl is a fixed-output derivation fetched with curl (file:// and
#     http:// work); with HF_ENDPOINT set in the environment of `nix build`
#     (an impure env var of the fetch) a https://huggingface.co/ URL is
#     fetched from that endpoint instead, which is how the test points the
#     fetches at its mock Hub. The hash pins the bytes either way.
{
  outputs =
    { self }:
    let
      system = "x86_64-linux";
      hostPath = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

      binPath = drvs: builtins.concatStringsSep ":" (map (d: "${d}/bin") drvs ++ [ hostPath ]);

      # A derivation running `script` with /bin/sh; `passthru` is merged into
      # the result, as in nixpkgs.
      mkDrv =
        {
          name,
          script,
          env ? { },
          passthru ? { },
          nativeBuildInputs ? [ ],
        }:
        let
          drv = derivation (
            env
            // {
              inherit name system;
              builder = "/bin/sh";
              args = [
                "-e"
                "-c"
                ''
                  export PATH=${binPath nativeBuildInputs}
                  ${script}
                ''
              ];
            }
          );
        in
        drv // passthru;

      placeholder = name: mkDrv {
        inherit name;
        script = "mkdir -p $out";
      };

      # The host's Debian tool, checked to be the pinned version.
      hostTool =
        {
          pname,
          version,
          bins,
          versionCmd,
        }:
        mkDrv {
          name = "${pname}-${version}-host";
          script = ''
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
        erofs-utils = hostTool {
          pname = "erofs-utils";
          version = "1.5";
          bins = [ "mkfs.erofs" "fsck.erofs" "dump.erofs" ];
          versionCmd = "mkdir -p e && mkfs.erofs -T0 e.img e";
        };
        cryptsetup = hostTool {
          pname = "cryptsetup";
          version = "2.6.1";
          bins = [ "veritysetup" ];
          versionCmd = "veritysetup --version";
        };
      };

      strip = attrs: builtins.removeAttrs attrs [ "passthru" "nativeBuildInputs" "buildInputs" "meta" "nativeCheckInputs" "src" "cargoLock" ];

      lib = {
        filterAttrs = pred: set: builtins.listToAttrs (builtins.concatMap (n: if pred n set.${n} then [ { name = n; value = set.${n}; } ] else [ ]) (builtins.attrNames set));
        mapAttrs' = f: set: builtins.listToAttrs (map (n: f n set.${n}) (builtins.attrNames set));
        nameValuePair = name: value: { inherit name value; };
        hasSuffix = suffix: s: let ls = builtins.stringLength s; lx = builtins.stringLength suffix; in ls >= lx && builtins.substring (ls - lx) lx s == suffix;
        removeSuffix = suffix: s: let ls = builtins.stringLength s; lx = builtins.stringLength suffix; in if lib.hasSuffix suffix s then builtins.substring 0 (ls - lx) s else s;
        # Never forced by the stand-in's buildRustPackage.
        fileset = {
          toSource = _: throw "stand-in nixpkgs: lib.fileset is not implemented";
          unions = _: throw "stand-in nixpkgs: lib.fileset is not implemented";
        };
        licenses = { gpl2Plus = "gpl2Plus"; mit = "mit"; asl20 = "asl20"; };
        mkForce = content: { _type = "override"; priority = 50; inherit content; };
        kernel = {
          yes = { tristate = "y"; optional = false; };
          module = { tristate = "m"; optional = false; };
          no = { tristate = "n"; optional = false; };
        };
      };

      # A kernel package set whose kernel is ./bzImage, whatever the config.
      standInKernel =
        args:
        mkDrv {
          name = "linux-stand-in";
          script = ''
            mkdir -p $out
            cp ${./bzImage} $out/bzImage
          '';
          passthru = {
            structuredExtraConfig = args.structuredExtraConfig or { };
            override = a: standInKernel (args // a);
          };
        };

      pkgs = {
        inherit lib;

        callPackage =
          f: overrides:
          let
            fn = if builtins.isFunction f then f else import f;
          in
          fn (builtins.intersectAttrs (builtins.functionArgs fn) pkgs // overrides);

        fetchurl =
          {
            url,
            sha256,
            name ? baseNameOf url,
            ...
          }:
          derivation {
            inherit name system url;
            builder = "/bin/sh";
            outputHashMode = "flat";
            outputHashAlgo = "sha256";
            outputHash = sha256;
            impureEnvVars = [ "HF_ENDPOINT" ];
            args = [
              "-e"
              "-c"
              ''
                export PATH=${hostPath}
                u="$url"
                case "$u" in
                  https://huggingface.co/*)
                    if [ -n "$HF_ENDPOINT" ]; then u="$HF_ENDPOINT/''${u#https://huggingface.co/}"; fi ;;
                esac
                curl -fsSL --retry 2 -o "$out" "$u"
              ''
            ];
          };

        runCommand =
          name: env: script:
          mkDrv {
            inherit name script;
            env = strip env;
            passthru = env.passthru or { };
            nativeBuildInputs = env.nativeBuildInputs or [ ];
          };

        stdenv.mkDerivation =
          args:
          hostTools.${args.pname} or (placeholder "${args.pname}-${args.version}");

        mkShell = args: placeholder "stand-in-shell";

        pkgsStatic = pkgs;

        linuxPackages_6_12.kernel = standInKernel { };

        edk2.mkDerivation =
          projectDscPath: args:
          mkDrv {
            inherit (args) name;
            script = ''
              mkdir -p $out/FV
              cp ${./OVMF.amdsev.fd} $out/FV/OVMF.fd
            '';
            passthru = { inherit projectDscPath; };
          };

        rustPlatform.buildRustPackage =
          let
            build =
              args:
              mkDrv {
                name = "${args.pname}-${args.version}";
                script = ''
                  mkdir -p $out/bin
                  cp ${./. + "/${args.meta.mainProgram}"} $out/bin/${args.meta.mainProgram}
                  chmod +x $out/bin/${args.meta.mainProgram}
                '';
                passthru = {
                  overrideAttrs = f: build (args // f args);
                };
              };
          in
          args: build ({ nativeBuildInputs = [ ]; } // args);
      }
      // builtins.listToAttrs (
        map (n: { name = n; value = placeholder n; }) [
          "autoreconfHook" "pkg-config" "gettext" "lz4" "libuuid" "lvm2" "json_c" "openssl" "popt"
          "clippy" "rustfmt" "cargo" "rustc" "xfsprogs" "e2fsprogs" "util-linux" "python3" "curl" "nix"
          "actionlint" "nixfmt-rfc-style" "nasm" "acpica-tools"
        ]
      );
    in
    {
      legacyPackages.${system} = pkgs;
      inherit lib;
    };
}
