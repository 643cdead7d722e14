# Pure helpers (builtins only) for turning a lock file entry into a
# fixed-output fetch: the Hub's resolve URL with each byte outside
# `A-Za-z0-9-._~` percent-encoded (upper-case hex, `/` kept, exactly as
# `mpk_hub::client::encode`), a valid Nix store name for any path
# (store names may not hold `/`, spaces or UTF-8), and the SRI form of a
# lock's hex sha256 (builtins.convertHash needs Nix 2.19; this works on any).
let
  hex = [ "0" "1" "2" "3" "4" "5" "6" "7" "8" "9" "A" "B" "C" "D" "E" "F" ];
  hexByte = n: builtins.elemAt hex (n / 16) + builtins.elemAt hex (n - (n / 16) * 16);

  # Printable ASCII, 0x20..0x7e, in order.
  ascii = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~";
  asciiBytes = builtins.genList (i: {
    byte = builtins.substring i 1 ascii;
    value = 32 + i;
  }) (builtins.stringLength ascii);

  # Single raw bytes >= 0x80, cut out of UTF-8 encodings (Nix strings are
  # byte strings and substring counts bytes). Continuation bytes 0x80-0xbf
  # are the second byte of U+0080..U+00BF; lead bytes come from the first
  # code point with that lead (0xc2-0xdf, 0xe0-0xef, 0xf0-0xf4). 0xc0, 0xc1
  # and 0xf5-0xff never occur in UTF-8 (lock paths are UTF-8).
  utf8 = s: builtins.fromJSON "\"${s}\"";
  u4 = n: "\\u" + hexByte (n / 256) + hexByte (n - (n / 256) * 256);
  cont = builtins.genList (i: {
    byte = builtins.substring 1 1 (utf8 (u4 (128 + i)));
    value = 128 + i;
  }) 64;
  lead2 = builtins.genList (i: {
    byte = builtins.substring 0 1 (utf8 (u4 ((2 + i) * 64)));
    value = 194 + i;
  }) 30;
  lead3 = builtins.genList (i: {
    byte = builtins.substring 0 1 (utf8 (u4 (if i == 0 then 2048 else i * 4096)));
    value = 224 + i;
  }) 16;
  # U+10000, U+40000, U+80000, U+C0000, U+100000 as surrogate pairs.
  lead4 = builtins.genList (i: {
    byte = builtins.substring 0 1 (utf8 (builtins.elemAt [
      "\\ud800\\udc00"
      "\\ud8c0\\udc00"
      "\\ud9c0\\udc00"
      "\\udac0\\udc00"
      "\\udbc0\\udc00"
    ] i));
    value = 240 + i;
  }) 5;

  allBytes = asciiBytes ++ cont ++ lead2 ++ lead3 ++ lead4;

  unreserved = c:
    let v = c.value; in
    (v >= 48 && v <= 57) || (v >= 65 && v <= 90) || (v >= 97 && v <= 122)
    || builtins.elem c.byte [ "-" "." "_" "~" ];

  escaped = builtins.filter (c: !(unreserved c) && c.byte != "/") allBytes;
  # Store names allow A-Za-z0-9 and +-._?=
  badInName = builtins.filter (c: !(unreserved c && c.byte != "~") && !(builtins.elem c.byte [ "+" "?" "=" ])) allBytes;
  hexDigits = builtins.listToAttrs (
    builtins.genList (i: {
      name = builtins.elemAt hex i;
      value = i;
    }) 16
  );
  b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  b64Char = n: builtins.substring n 1 b64;
in
rec {
  # `sha256-<base64>` of a 64-digit hex sha256 (as nixpkgs' `hash =` wants).
  sriSha256 =
    hexSha:
    let
      h = builtins.replaceStrings [ "a" "b" "c" "d" "e" "f" ] [ "A" "B" "C" "D" "E" "F" ] hexSha;
      byte = i: hexDigits.${builtins.substring (2 * i) 1 h} * 16 + hexDigits.${builtins.substring (2 * i + 1) 1 h};
      # 32 bytes: ten groups of three, then two bytes and one `=`.
      group =
        g:
        let
          n = byte (3 * g) * 65536 + byte (3 * g + 1) * 256 + byte (3 * g + 2);
        in
        b64Char (n / 262144) + b64Char (builtins.bitAnd (n / 4096) 63) + b64Char (builtins.bitAnd (n / 64) 63) + b64Char (builtins.bitAnd n 63);
      last =
        let
          n = byte 30 * 65536 + byte 31 * 256;
        in
        b64Char (n / 262144) + b64Char (builtins.bitAnd (n / 4096) 63) + b64Char (builtins.bitAnd (n / 64) 63) + "=";
    in
    assert builtins.stringLength hexSha == 64 || throw "not a hex sha256: ${hexSha}";
    "sha256-" + builtins.concatStringsSep "" (builtins.genList group 10) + last;

  # Percent-encodes a lock path for a URL (`/` kept).
  encodePath = builtins.replaceStrings (map (c: c.byte) escaped) (map (c: "%" + hexByte c.value) escaped);

  # `hf-<index>-<path with every byte outside the store-name alphabet as _>`,
  # at most 200 bytes.
  storeName = index: path:
    let s = builtins.replaceStrings (map (c: c.byte) badInName) (map (_: "_") badInName) path; in
    builtins.substring 0 200 "hf-${toString index}-${s}";

  # The resolve URL of `path` at `commit` of `repo` (`org/name`).
  resolveUrl = { endpoint ? "https://huggingface.co", repo, commit, path }:
    "${endpoint}/${repo}/resolve/${commit}/${encodePath path}";
}
