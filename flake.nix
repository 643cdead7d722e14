{
  description = "mpk: verifiable model packs (EROFS + dm-verity, byte-identical to Modelwrap)";

  # Thin on purpose: the logic is in nix/*.nix. x86_64-linux only.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs =
    { self, nixpkgs }:
    let
      system = "x86_64-linux";
      pkgs = nixpkgs.legacyPackages.${system};

      tools = pkgs.callPackage ./nix/reference-tools.nix { };
      mpk = pkgs.callPackage ./nix/package.nix { };

      # lib.mkModelPack { lock, name ? null, endpoint ? …, fetchurlArgs ? { },
      #   threads ? null, pkgs ? <this flake's nixpkgs>, mpk ? <this mpk> }
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

      # packages.model-<short> for every models/<short>.lock.json.
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
        })
      ) lockFiles;
    in
    {
      lib = { inherit mkModelPack; };

      packages.${system} = models // {
        inherit mpk;
        default = mpk;
        erofs-utils-1_5 = tools.erofs-utils;
        cryptsetup-2_6_1 = tools.cryptsetup;
      };

      apps.${system} = {
        mpk = {
          type = "app";
          program = "${mpk}/bin/mpk";
        };
        default = self.apps.${system}.mpk;
      };

      checks.${system} = pkgs.callPackage ./nix/checks.nix {
        inherit mpk;
        inherit (tools) erofs-utils cryptsetup;
      };

      devShells.${system}.default = pkgs.callPackage ./nix/devshell.nix {
        inherit mpk;
        inherit (tools) erofs-utils cryptsetup;
      };

      formatter.${system} = pkgs.nixfmt-rfc-style;

      # vm-images/<name> as Nix (kernel with dm-verity/dm-init/EROFS/virtio
      # built in, initrd with the guest init, AMD SEV OVMF, the base-image
      # description) and the per-base-image deployment.json of each model
      # pack go here: issues 5 and 4.
    };
}
