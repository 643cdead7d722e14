{
  description = "mpk: verifiable model packs (EROFS + dm-verity, byte-identical to Modelwrap)";

  # Thin on purpose: the logic is in nix/*.nix. x86_64-linux only.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs =
    { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};

      tools = pkgs.callPackage ./nix/reference-tools.nix { };
      mpk = pkgs.callPackage ./nix/package.nix { };
      # The guest init, static (musl), for the base images' initrds.
      mpkInit = pkgs.pkgsStatic.callPackage ./nix/guest-init.nix { };

      # lib.mkVmImage { name, vcpus, vcpu_type, memory_mb, guest_features ? 1,
      #   cmdline ? …, kernelPackages ? …, kernelConfig ? { }, kernel ? …,
      #   ovmf ? …, tdvf ? null, modules ? [ ], files ? { }, … ,
      #   pkgs ? <this flake's nixpkgs>, mpk ? <this mpk>, mpkInit ? <this mpk-init> }
      # (nix/vm-image.nix): kernel, initrd, AmdSev OVMF and image.json.
      mkVmImage =
        {
          pkgs ? nixpkgs.legacyPackages.${system},
          mpk ? self.packages.${system}.mpk,
          mpkInit ? self.packages.${system}.mpk-init,
          ...
        }@args:
        import ./nix/vm-image.nix { inherit pkgs mpk mpkInit; } (
          builtins.removeAttrs args [ "pkgs" "mpk" "mpkInit" ]
        );

      # One base image per vm-images/<name>/default.nix (the parameters of
      # mkVmImage; a function of { pkgs } or an attribute set).
      # vm-images/example has none: it stays a hand-written, synthetic one.
      vmImages = builtins.mapAttrs (
        n: _:
        let
          p = import (./vm-images + "/${n}/default.nix");
        in
        mkVmImage ({ name = n; } // (if builtins.isFunction p then p { inherit pkgs; } else p))
      ) (
        pkgs.lib.filterAttrs (
          n: t: t == "directory" && builtins.pathExists (./vm-images + "/${n}/default.nix")
        ) (builtins.readDir ./vm-images)
      );

      # lib.mkModelPack { lock, name ? null, endpoint ? …, fetchurlArgs ? { },
      #   threads ? null, bases ? [ ], schema ? "modelwrap-v1",
      #   pkgs ? <this flake's nixpkgs>, mpk ? <this mpk> }
      # (bases: mkVmImage outputs; one deployment.json per base image;
      # schema: modelwrap-v1 or modelwrap-v2, README "Schemas")
      mkModelPack =
        {
          lock,
          pkgs ? nixpkgs.legacyPackages.${system},
          mpk ? self.packages.${system}.mpk,
          ...
        }@args:
        import ./nix/model-pack.nix { inherit (pkgs) fetchurl runCommand; inherit mpk; } (
          builtins.removeAttrs args [ "pkgs" "mpk" ]
        );

      # packages.model-<short> for every models/<short>.lock.json, with the
      # deployment document of every Nix base image, packed with the schema
      # named in models/<short>.schema beside the lock (one line,
      # modelwrap-v1 or modelwrap-v2; no file: modelwrap-v1).
      lockFiles = pkgs.lib.filterAttrs (
        n: t: t == "regular" && pkgs.lib.hasSuffix ".lock.json" n
      ) (builtins.readDir ./models);
      models = pkgs.lib.mapAttrs' (
        n: _:
        let
          short = pkgs.lib.removeSuffix ".lock.json" n;
        in
        pkgs.lib.nameValuePair "model-${short}" (mkModelPack {
          lock = ./models + "/${n}";
          name = "model-${short}";
          bases = builtins.attrValues vmImages;
          schema =
            let
              f = ./models + "/${short}.schema";
            in
            if builtins.pathExists f then
              builtins.replaceStrings [ "\n" ] [ "" ] (builtins.readFile f)
            else
              "modelwrap-v1";
        })
      ) lockFiles;
    in
    {
      lib = { inherit mkModelPack mkVmImage; };

      packages.${system} =
        models
        // pkgs.lib.mapAttrs' (n: v: pkgs.lib.nameValuePair "vm-image-${n}" v) vmImages
        // {
          inherit mpk;
          mpk-init = mpkInit;
          default = mpk;
          erofs-utils-1_5 = tools.erofs-utils;
          erofs-utils-1_8_6 = tools.erofs-utils-186;
          cryptsetup-2_6_1 = tools.cryptsetup;
        };

      apps.${system} = {
        mpk = {
          type = "app";
          program = "${mpk}/bin/mpk";
          meta.description = mpk.meta.description;
        };
        default = self.apps.${system}.mpk;
      };

      # callPackage makes its result overridable: the attribute set of checks
      # gains `override` and `overrideDerivation`, which are not derivations,
      # and `nix flake check` refuses every non-derivation under checks.
      checks.${system} = pkgs.lib.filterAttrs (_: pkgs.lib.isDerivation) (
        pkgs.callPackage ./nix/checks.nix {
          inherit mpk;
          inherit (tools) erofs-utils erofs-utils-186 cryptsetup;
        }
      );

      devShells.${system}.default = pkgs.callPackage ./nix/devshell.nix {
        inherit mpk;
        inherit (tools) erofs-utils erofs-utils-186 cryptsetup;
      };

      formatter.${system} = pkgs.nixfmt;
    };
}
