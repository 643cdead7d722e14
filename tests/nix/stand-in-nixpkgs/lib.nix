# The part of nixpkgs' `lib` the flake and nix/*.nix use, with the real
# semantics (written from the nixpkgs sources, not copied). Checked against
# NixOS/nixpkgs as stored in the team's code index on 2026-12-03:
#   - lib/customisation.nix (makeOverridable, callPackageWith,
#     overrideDerivation, extendDerivation): the semantics nixpkgs has had
#     since 2023 and still has in 25.11: `callPackage` returns
#     `makeOverridable f args`, and for an attribute set result (a
#     derivation or not) that adds `override` and `overrideDerivation`
#     (and `overrideAttrs` when the result has one); a missing required
#     argument aborts.
#   - lib/attrsets.nix (isDerivation: `value.type or null == "derivation"`,
#     filterAttrs, mapAttrs', nameValuePair), lib/strings.nix (hasPrefix,
#     hasSuffix, removeSuffix, escapeShellArg(s)), lib/trivial.nix
#     (isFunction, functionArgs, setFunctionArgs, warn).
#   - lib/fileset (toSource, unions): only files and folders named by the
#     file set end up in the source, every named path must exist and lie
#     under `root`, and the result is a store path named "source".
let
  lib = rec {
    # lib/trivial.nix
    isFunction = f: builtins.isFunction f || (f ? __functor && isFunction (f.__functor f));
    functionArgs =
      f: if f ? __functor then f.__functionArgs or (functionArgs (f.__functor f)) else builtins.functionArgs f;
    setFunctionArgs = f: args: {
      __functor = _: f;
      __functionArgs = args;
    };
    mirrorFunctionArgs = f: g: setFunctionArgs g (functionArgs f);
    # Nix >= 2.23 has builtins.warn (what lib.warn uses there).
    warn =
      if builtins ? warn then
        builtins.warn
      else
        msg: builtins.trace "evaluation warning: ${msg}";
    flip = f: a: b: f b a;
    optionalAttrs = cond: as: if cond then as else { };

    # lib/attrsets.nix
    isDerivation = value: value.type or null == "derivation";
    filterAttrs =
      pred: set:
      builtins.removeAttrs set (
        builtins.filter (name: !pred name set.${name}) (builtins.attrNames set)
      );
    mapAttrs' = f: set: builtins.listToAttrs (map (attr: f attr set.${attr}) (builtins.attrNames set));
    nameValuePair = name: value: { inherit name value; };

    # lib/strings.nix
    hasPrefix = pref: str: builtins.substring 0 (builtins.stringLength pref) str == pref;
    hasSuffix =
      suffix: content:
      let
        lenContent = builtins.stringLength content;
        lenSuffix = builtins.stringLength suffix;
      in
      lenContent >= lenSuffix && builtins.substring (lenContent - lenSuffix) lenContent content == suffix;
    removeSuffix =
      suffix: str:
      let
        sufLen = builtins.stringLength suffix;
        sLen = builtins.stringLength str;
      in
      if sufLen <= sLen && suffix == builtins.substring (sLen - sufLen) sufLen str then
        builtins.substring 0 (sLen - sufLen) str
      else
        str;
    escapeShellArg = arg: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
    escapeShellArgs = args: builtins.concatStringsSep " " (map escapeShellArg args);

    # lib/customisation.nix
    overrideDerivation =
      drv: f:
      let
        newDrv = derivation (drv.drvAttrs // (f drv));
      in
      flip (extendDerivation (builtins.seq drv.meta or { } true)) newDrv (
        {
          meta = drv.meta or { };
          passthru = drv.passthru or { };
        }
        // (drv.passthru or { })
      );

    makeOverridable =
      f:
      mirrorFunctionArgs f (
        origArgs:
        let
          result = f origArgs;
          copyArgs = g: mirrorFunctionArgs f g;
          overrideWith = newArgs: origArgs // (if isFunction newArgs then newArgs origArgs else newArgs);
          overrideResult = g: makeOverridable (copyArgs (args: g (f args))) origArgs;
        in
        if builtins.isAttrs result then
          result
          // {
            override = newArgs: makeOverridable f (overrideWith newArgs);
            overrideDerivation = fdrv: overrideResult (x: overrideDerivation x fdrv);
            ${if result ? overrideAttrs then "overrideAttrs" else null} =
              fdrv: overrideResult (x: x.overrideAttrs fdrv);
          }
        else if isFunction result then
          setFunctionArgs result (functionArgs result)
          // {
            override = newArgs: makeOverridable f (overrideWith newArgs);
          }
        else
          result
      );

    callPackageWith =
      autoArgs: fn: args:
      let
        f = if isFunction fn then fn else import fn;
        fargs = functionArgs f;
        allArgs = builtins.intersectAttrs fargs autoArgs // args;
        # Arguments without a default that nobody supplies.
        missingArgs = filterAttrs (_: hasDefault: !hasDefault) (
          builtins.removeAttrs fargs (builtins.attrNames allArgs)
        );
      in
      if missingArgs == { } then
        makeOverridable f allArgs
      else
        abort "lib.customisation.callPackageWith: Function called without required argument \"${builtins.head (builtins.attrNames missingArgs)}\"";

    extendDerivation =
      condition: passthru: drv:
      let
        outputs = drv.outputs or [ "out" ];
        commonAttrs =
          drv // (builtins.listToAttrs outputsList) // { all = map (x: x.value) outputsList; } // passthru;
        outputToAttrListElement = outputName: {
          name = outputName;
          value =
            commonAttrs
            // {
              inherit (drv.${outputName}) type outputName;
              outputSpecified = true;
              drvPath = assert condition; drv.${outputName}.drvPath;
              outPath = assert condition; drv.${outputName}.outPath;
            };
        };
        outputsList = map outputToAttrListElement outputs;
      in
      commonAttrs
      // {
        drvPath = assert condition; drv.drvPath;
        outPath = assert condition; drv.outPath;
      };

    # lib/fileset: a file set is the list of the paths it names.
    fileset =
      let
        isFileset = x: x._type or null == "fileset";
        coerce =
          context: x:
          if isFileset x then
            x
          else if !builtins.isPath x then
            throw "${context} is not a file set or a path (it is a ${builtins.typeOf x})"
          else if !builtins.pathExists x then
            throw "${context} (${toString x}) is a path that does not exist."
          else
            {
              _type = "fileset";
              paths = [ (toString x) ];
            };
      in
      {
        unions =
          list:
          if !builtins.isList list then
            throw "lib.fileset.unions: Argument is of type ${builtins.typeOf list}, but it should be a list instead."
          else
            {
              _type = "fileset";
              paths = builtins.concatLists (
                builtins.genList (
                  i: (coerce "lib.fileset.unions: Element ${toString i}" (builtins.elemAt list i)).paths
                ) (builtins.length list)
              );
            };
        toSource =
          { root, fileset }:
          let
            r = toString root;
            fs = coerce "lib.fileset.toSource: `fileset`" fileset;
            outside = builtins.filter (p: p != r && !hasPrefix (r + "/") p) fs.paths;
            keep =
              p: t:
              builtins.any (
                m: p == m || hasPrefix (m + "/") p || (t == "directory" && hasPrefix (p + "/") m)
              ) fs.paths;
          in
          if !builtins.isPath root then
            throw "lib.fileset.toSource: `root` (${toString root}) is a string-like value, but it should be a path instead."
          else if outside != [ ] then
            throw "lib.fileset.toSource: `fileset` could contain files in ${builtins.head outside}, which is not under the `root` (${r})."
          else
            builtins.path {
              name = "source";
              path = root;
              filter = keep;
            };
      };

    licenses = {
      gpl2Plus = {
        spdxId = "GPL-2.0-or-later";
      };
      mit = {
        spdxId = "MIT";
      };
      asl20 = {
        spdxId = "Apache-2.0";
      };
    };
    mkForce = content: {
      _type = "override";
      priority = 50;
      inherit content;
    };
    kernel = {
      yes = {
        tristate = "y";
        optional = false;
      };
      module = {
        tristate = "m";
        optional = false;
      };
      no = {
        tristate = "n";
        optional = false;
      };
    };
    fakeHash = "sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  };
in
lib
