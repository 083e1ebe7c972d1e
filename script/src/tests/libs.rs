//! `cjson`, `bit`, `struct` and `cmsgpack` against replies captured from redis-server 7.0.15
//! (`EVAL <body> 0`, one fresh script each).

use super::*;
use bytes::Bytes;

fn check(cases: &[(&str, Value)]) {
    let mut vm = vm();
    let mut host = FakeHost::default();
    for (body, want) in cases {
        assert_eq!(&eval_on(&mut vm, body, &mut host), want, "{body}");
    }
}

#[test]
fn cjson_matches_redis() {
    let cases: &[(&str, Value)] = &[
        (
            "return cjson.encode({1,2,3,{a=1.5}, 0.1, 1/3})",
            Value::Bulk(Bytes::from_static(
                b"[1,2,3,{\x22a\x22:1.5},0.1,0.33333333333333]",
            )),
        ),
        (
            "return cjson.encode({})",
            Value::Bulk(Bytes::from_static(b"{}")),
        ),
        (
            "return cjson.encode(\"a\\\"b\\\\c/d\\n\\r\\t\\b\\f\\1\\127\\200\")",
            Value::Bulk(Bytes::from_static(
                b"\x22a\x5c\x22b\x5c\x5cc\x5c/d\x5cn\x5cr\x5ct\x5cb\x5cf\x5cu0001\x5cu007f\xc8\x22",
            )),
        ),
        (
            "return cjson.encode({[1]=1,[2]=2,[4]=4})",
            Value::Bulk(Bytes::from_static(b"[1,2,null,4]")),
        ),
        (
            "return cjson.encode({[1]=1,[20]=2})",
            err(
                "ERR user_script:1: Cannot serialise table: excessively sparse array script: 17303987ac6a57263cac31c74212431dce49e99c, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode({[1.5]=1})",
            Value::Bulk(Bytes::from_static(b"{\x221.5\x22:1}")),
        ),
        (
            "return cjson.encode({[true]=1})",
            err(
                "ERR user_script:1: Cannot serialise boolean: table key must be a number or string script: 376a640005c8509c694166527ca834359bf69aa8, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode({x={y={z={}}}})",
            Value::Bulk(Bytes::from_static(
                b"{\x22x\x22:{\x22y\x22:{\x22z\x22:{}}}}",
            )),
        ),
        (
            "return cjson.encode(cjson.null)",
            Value::Bulk(Bytes::from_static(b"null")),
        ),
        (
            "return cjson.encode({1, cjson.null, 3})",
            Value::Bulk(Bytes::from_static(b"[1,null,3]")),
        ),
        (
            "return cjson.encode(1e300)",
            Value::Bulk(Bytes::from_static(b"1e+300")),
        ),
        (
            "return cjson.encode(100000000000000)",
            Value::Bulk(Bytes::from_static(b"1e+14")),
        ),
        (
            "return cjson.encode(-0.000001)",
            Value::Bulk(Bytes::from_static(b"-1e-06")),
        ),
        (
            "return cjson.encode(12345678901234567)",
            Value::Bulk(Bytes::from_static(b"1.2345678901235e+16")),
        ),
        (
            "return cjson.encode(math.huge)",
            err(
                "ERR user_script:1: Cannot serialise number: must not be NaN or Inf script: 457685e99227c138c112e42b2109a0d5a6d1ad23, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode(0/0)",
            err(
                "ERR user_script:1: Cannot serialise number: must not be NaN or Inf script: d3f8d4e745d6587b04e9dd216e0d4631f0a306d9, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode(function() end)",
            err(
                "ERR user_script:1: Cannot serialise function: type not supported script: c6600573aa08cdf0af5da6e0ef682db69a3acc00, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode()",
            err(
                "ERR user_script:1: bad argument #1 to 'encode' (expected 1 argument) script: fc593ea31f478c7ed65c77495cc63edeb9153530, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode(1, 2)",
            err(
                "ERR user_script:1: bad argument #1 to 'encode' (expected 1 argument) script: e3a38cd8c1bb7de419304607b05108c80af53cbc, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode(true)",
            Value::Bulk(Bytes::from_static(b"true")),
        ),
        (
            "return cjson.encode({[0]=1})",
            Value::Bulk(Bytes::from_static(b"{\x220\x22:1}")),
        ),
        (
            "return cjson.encode({10})",
            Value::Bulk(Bytes::from_static(b"[10]")),
        ),
        (
            "return cjson.encode({a={1,2},b=false})",
            Value::Bulk(Bytes::from_static(b"{\x22a\x22:[1,2],\x22b\x22:false}")),
        ),
        (
            "local t = {} local c = t for i=1,1001 do c[1] = {} c = c[1] end return cjson.encode(t)",
            err(
                "ERR user_script:1: Cannot serialise, excessive nesting (1001) script: 1072f598fc1cc6f47a193d769ef19041c6e7bdde, on @user_script:1.",
            ),
        ),
        (
            "local t = {} local c = t for i=1,999 do c[1] = {} c = c[1] end return #cjson.encode(t)",
            Value::Int(2000),
        ),
        (
            "return cjson.decode('[1')",
            err(
                "ERR user_script:1: Expected comma or array end but found T_END at character 3 script: 9520afde0d0f5886fe8706b129489231b68d88bd, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('')",
            err(
                "ERR user_script:1: Expected value but found T_END at character 1 script: 7ff8cf86abed928f4d61a01dcc9713f0117b180a, on @user_script:1.",
            ),
        ),
        ("return cjson.decode('{\"a\":1}').a", Value::Int(1)),
        ("return cjson.decode('[1,2,3]')[3]", Value::Int(3)),
        (
            "return cjson.decode('\"\\\\u00e9\\\\ud83d\\\\ude00\"')",
            Value::Bulk(Bytes::from_static(b"\xc3\xa9\xf0\x9f\x98\x80")),
        ),
        (
            "return cjson.decode('\"\\\\ud83d\"')",
            err(
                "ERR user_script:1: Expected value but found invalid unicode escape code at character 2 script: a6c52b6928b77ab585254f4aad3a29c682736f38, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('\"\\\\q\"')",
            err(
                "ERR user_script:1: Expected value but found invalid escape code at character 2 script: 469a6be20b8c762516eb8d35f233a4e25cd7e19c, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('\"abc')",
            err(
                "ERR user_script:1: Expected value but found unexpected end of string at character 5 script: 30d67c6fb8e066eef4796bfcc59cee500c381744, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('{\"a\" 1}')",
            err(
                "ERR user_script:1: Expected colon but found T_NUMBER at character 6 script: 3486ee24bfdfc100c738c73355e99954ef01d92f, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('{1:1}')",
            err(
                "ERR user_script:1: Expected object key string but found T_NUMBER at character 2 script: 39975652284445c0a4461fbe58b0a4a1cd6aebc9, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('{\"a\":1,}')",
            err(
                "ERR user_script:1: Expected object key string but found T_OBJ_END at character 8 script: 7e3659dd873275ff5047e436b0cc31cc91d160e4, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('[1 2]')",
            err(
                "ERR user_script:1: Expected comma or array end but found T_NUMBER at character 4 script: cae89247ef27d42d411c61ae44ff3af6ab258d99, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('tru')",
            err(
                "ERR user_script:1: Expected value but found invalid token at character 1 script: b0ae6f0426d6ff93bdff3364f547baa19aa4171b, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('1 2')",
            err(
                "ERR user_script:1: Expected the end but found T_NUMBER at character 3 script: 1408d9a9f8459030a4a353692b905ad7a0ddb424, on @user_script:1.",
            ),
        ),
        ("return cjson.decode('  12.5e1  ')", Value::Int(125)),
        ("return cjson.decode('0x10')", Value::Int(16)),
        ("return cjson.decode('-Infinity') < 0", Value::Int(1)),
        ("return cjson.decode('007')", Value::Int(7)),
        ("return cjson.decode('+5')", Value::Int(5)),
        (
            "return tostring(cjson.decode('null') == cjson.null)",
            Value::Bulk(Bytes::from_static(b"true")),
        ),
        (
            "return tostring(cjson.decode('[null]')[1] == cjson.null)",
            Value::Bulk(Bytes::from_static(b"true")),
        ),
        ("return cjson.decode('true')", Value::Int(1)),
        ("return cjson.decode('false')", Value::Nil),
        ("return cjson.decode('[]')", Value::Array(vec![])),
        (
            "return type(cjson.decode('{}'))",
            Value::Bulk(Bytes::from_static(b"table")),
        ),
        (
            "return cjson.decode()",
            err(
                "ERR user_script:1: bad argument #1 to 'decode' (expected 1 argument) script: 5378278d59343caf5c3375a655dfea5e69ab8a74, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode({})",
            err(
                "ERR user_script:1: bad argument #1 to 'decode' (string expected, got table) script: 10c706d54b3ae7d2bcc169d647405abd961145fa, on @user_script:1.",
            ),
        ),
        ("return cjson.decode(12)", Value::Int(12)),
        (
            "return cjson.decode('\\0a')",
            err(
                "ERR user_script:1: JSON parser does not support UTF-16 or UTF-32 script: dd78d9328784e2bc97ce56b69c1960be18a3e442, on @user_script:1.",
            ),
        ),
        ("return cjson.decode('[1]\\0garbage')[1]", Value::Int(1)),
        (
            "return cjson.decode('[' .. string.rep('[', 1000) .. string.rep(']', 1001))",
            err(
                "ERR user_script:1: Found too many nested data structures (1001) at character 1001 script: bed622f1c146039ad9d6026e90a404d4af769af5, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('\"\\\\/\\\\b\\\\f\\\\n\\\\r\\\\t\\\\\"\\\\\\\\\"')",
            Value::Bulk(Bytes::from_static(b"/\x08\x0c\x0a\x0d\x09\x22\x5c")),
        ),
        (
            "return cjson.encode(cjson.decode('{\"a\":[1,2,{\"b\":null}]}'))",
            Value::Bulk(Bytes::from_static(b"{\x22a\x22:[1,2,{\x22b\x22:null}]}")),
        ),
        (
            "return cjson.decode('@')",
            err(
                "ERR user_script:1: Expected value but found invalid token at character 1 script: 94a3d70a8f631b52fe9d4a536233a1c9e885627c, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('-')",
            err(
                "ERR user_script:1: Expected value but found invalid number at character 1 script: a968c762a4638482bd9ef50dcecdc4504214d87d, on @user_script:1.",
            ),
        ),
        (
            "return cjson.decode('nan') ~= cjson.decode('nan')",
            Value::Int(1),
        ),
    ];
    check(cases);
}

#[test]
fn bit_matches_redis() {
    let cases: &[(&str, Value)] = &[
        ("return bit.tobit(0xffffffff)", Value::Int(-1)),
        ("return bit.tobit(2^32 + 5)", Value::Int(5)),
        (
            "return bit.tohex(65535)",
            Value::Bulk(Bytes::from_static(b"0000ffff")),
        ),
        (
            "return bit.tohex(-1, -4)",
            Value::Bulk(Bytes::from_static(b"FFFF")),
        ),
        (
            "return bit.tohex(255, 2)",
            Value::Bulk(Bytes::from_static(b"ff")),
        ),
        (
            "return bit.tohex(1, 10)",
            Value::Bulk(Bytes::from_static(b"00000001")),
        ),
        (
            "return bit.tohex()",
            err(
                "ERR user_script:1: bad argument #1 to 'tohex' (number expected, got no value) script: bbebe1b19aaebf97fcec4b5510d6e6a9817e9192, on @user_script:1.",
            ),
        ),
        ("return bit.band(0xff, 0x0f, 0x3)", Value::Int(3)),
        ("return bit.bor(1, 2, 4, 8)", Value::Int(15)),
        ("return bit.bxor(5, 3)", Value::Int(6)),
        ("return bit.bnot(0)", Value::Int(-1)),
        ("return bit.lshift(1, 31)", Value::Int(-2147483648)),
        ("return bit.lshift(1, 33)", Value::Int(2)),
        ("return bit.rshift(-1, 28)", Value::Int(15)),
        ("return bit.arshift(-256, 4)", Value::Int(-16)),
        ("return bit.rol(0x12345678, 8)", Value::Int(878082066)),
        ("return bit.ror(0x12345678, 8)", Value::Int(2014458966)),
        ("return bit.bswap(0x12345678)", Value::Int(2018915346)),
        ("return bit.band('12', 4)", Value::Int(4)),
        (
            "return bit.band('x', 4)",
            err(
                "ERR user_script:1: bad argument #1 to 'band' (number expected, got string) script: c4d75d787df96e67046fc20bf54d08add513e1c7, on @user_script:1.",
            ),
        ),
        (
            "return bit.band()",
            err(
                "ERR user_script:1: bad argument #1 to 'band' (number expected, got no value) script: 5cf53f885283a4f44a8fe7ad7e7fccaed4113e62, on @user_script:1.",
            ),
        ),
        (
            "return bit.tobit(1.5) + bit.tobit(2.5) * 10",
            Value::Int(22),
        ),
        (
            "return bit.bor(1, {})",
            err(
                "ERR user_script:1: bad argument #2 to 'bor' (number expected, got table) script: 7340156a959cd187c2d0bbbe30e001b97eacfa96, on @user_script:1.",
            ),
        ),
    ];
    check(cases);
}

#[test]
fn struct_matches_redis() {
    let cases: &[(&str, Value)] = &[
        ("return struct.pack('>I2', 258)", Value::Bulk(Bytes::from_static(b"\x01\x02"))),
        ("return struct.pack('<i4', -2)", Value::Bulk(Bytes::from_static(b"\xfe\xff\xff\xff"))),
        ("return struct.pack('>i8', -2)", Value::Bulk(Bytes::from_static(b"\xff\xff\xff\xff\xff\xff\xff\xfe"))),
        ("return struct.pack('bBhHlLT', -1, 255, -300, 65535, -5, 5, 7)", Value::Bulk(Bytes::from_static(b"\xff\xff\xd4\xfe\xff\xff\xfb\xff\xff\xff\xff\xff\xff\xff\x05\x00\x00\x00\x00\x00\x00\x00\x07\x00\x00\x00\x00\x00\x00\x00"))),
        ("return struct.pack('!4 b i', 1, 2)", Value::Bulk(Bytes::from_static(b"\x01\x00\x00\x00\x02\x00\x00\x00"))),
        ("return struct.pack('!8 b d', 1, 1.5)", Value::Bulk(Bytes::from_static(b"\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xf8?"))),
        ("return struct.pack('>d', 0.1)", Value::Bulk(Bytes::from_static(b"?\xb9\x99\x99\x99\x99\x99\x9a"))),
        ("return struct.pack('<f', 0.5)", Value::Bulk(Bytes::from_static(b"\x00\x00\x00?"))),
        ("return struct.pack('c3', 'abcdef')", Value::Bulk(Bytes::from_static(b"abc"))),
        ("return struct.pack('c0', 'abcdef')", Value::Bulk(Bytes::from_static(b"abcdef"))),
        ("return struct.pack('s', 'hi')", Value::Bulk(Bytes::from_static(b"hi\x00"))),
        ("return struct.pack('x')", Value::Bulk(Bytes::from_static(b"\x00"))),
        ("return struct.pack('c5', 'ab')", err("ERR user_script:1: bad argument #3 to 'pack' (string too short) script: cec53901ab5000b5eccda51f64e59e716bdfd4ba, on @user_script:1.")),
        ("return struct.pack('q', 1)", err("ERR user_script:1: bad argument #1 to 'pack' (invalid format option 'q') script: 49599a2466f241bd45a2bd4f631df3a1a1ec9790, on @user_script:1.")),
        ("return struct.pack('!3', 1)", err("ERR user_script:1: alignment 3 is not a power of 2 script: 015083070625e0c8535172e55b13a94acdf4c3c6, on @user_script:1.")),
        ("return struct.pack('i33', 1)", err("ERR user_script:1: integral size 33 is larger than limit of 32 script: 0a76c071d82805e752befa6958961c98c39f358f, on @user_script:1.")),
        ("return struct.pack('i', 'x')", err("ERR user_script:1: bad argument #2 to 'pack' (number expected, got string) script: 72d01f23645269179316b093775c7fa64478554a, on @user_script:1.")),
        ("return struct.pack()", err("ERR user_script:1: bad argument #1 to 'pack' (string expected, got no value) script: c9b8aed4f0633591e6252db264bf8b86b82828d5, on @user_script:1.")),
        ("return struct.pack('>I16', 1)", Value::Bulk(Bytes::from_static(b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01"))),
        ("return {struct.unpack('<i4', 'abcd')}", Value::Array(vec![Value::Int(1684234849), Value::Int(5)])),
        ("return {struct.unpack('>i2', '\\255\\254')}", Value::Array(vec![Value::Int(-2), Value::Int(3)])),
        ("return {struct.unpack('>I2', '\\255\\254')}", Value::Array(vec![Value::Int(65534), Value::Int(3)])),
        ("return {struct.unpack('B', 'ab', 2)}", Value::Array(vec![Value::Int(98), Value::Int(3)])),
        ("return {struct.unpack('B', 'ab', 3)}", err("ERR user_script:1: bad argument #2 to 'unpack' (data string too short) script: b307c3dfaa50c9ce7818e1df647891f2af6cda5b, on @user_script:1.")),
        ("return {struct.unpack('B', 'ab', 0)}", err("ERR user_script:1: bad argument #3 to 'unpack' (offset must be 1 or greater) script: f2d55419a2064e2d347b8a96509fdbe1911e9d85, on @user_script:1.")),
        ("return {struct.unpack('s', 'ab\\0cd')}", Value::Array(vec![Value::Bulk(Bytes::from_static(b"ab")), Value::Int(4)])),
        ("return {struct.unpack('s', 'abcd')}", err("ERR user_script:1: unfinished string in data script: 6411263da149c14568c13a05bab1d051f37d7ef6, on @user_script:1.")),
        ("return {struct.unpack('b c0', '\\3abcdef')}", Value::Array(vec![Value::Bulk(Bytes::from_static(b"abc")), Value::Int(5)])),
        ("return {struct.unpack('c0', 'abc')}", err("ERR user_script:1: format 'c0' needs a previous size script: b3fd8e7c8bb6ee20854fafea5b84014791ec5cf5, on @user_script:1.")),
        ("return {struct.unpack('>d', struct.pack('>d', 2.25))}", Value::Array(vec![Value::Int(2), Value::Int(9)])),
        ("return {struct.unpack('<f', struct.pack('<f', 0.5))}", Value::Array(vec![Value::Int(0), Value::Int(5)])),
        ("return {struct.unpack('!4 b i', struct.pack('!4 b i', 1, 2))}", Value::Array(vec![Value::Int(1), Value::Int(2), Value::Int(9)])),
        ("return {struct.unpack('>i16', struct.pack('>i16', -3))}", Value::Array(vec![Value::Int(-3), Value::Int(17)])),
        ("return {struct.unpack('i', 'ab')}", err("ERR user_script:1: bad argument #2 to 'unpack' (data string too short) script: 4ea259654b1cfa6b1fc999f3ae72bb6f48d476f4, on @user_script:1.")),
        ("return struct.size('!8 b d')", Value::Int(16)),
        ("return struct.size('i i3 c7')", Value::Int(14)),
        ("return struct.size('s')", err("ERR user_script:1: bad argument #1 to 'size' (option 's' has no fixed size) script: a2a0525826ab7939ccd3f54427a862205642f28f, on @user_script:1.")),
        ("return struct.size('c0')", err("ERR user_script:1: bad argument #1 to 'size' (option 'c0' has no fixed size) script: 18f217e7d560de92703dc71e9797e043b536e0e6, on @user_script:1.")),
        ("return struct.size('q')", Value::Int(0)),
        ("return {struct.unpack('xxb', 'ab' .. string.char(5))}", Value::Array(vec![Value::Int(5), Value::Int(4)])),
        ("return struct.unpack('B', 'a', -1)", err("ERR user_script:1: bad argument #2 to 'unpack' (data string too short) script: aa8d767b521b73a293179bb2351208d01a094145, on @user_script:1.")),
    ];
    check(cases);
}

#[test]
fn cmsgpack_matches_redis() {
    let cases: &[(&str, Value)] = &[
        ("return cmsgpack.pack(1, 127, 128, 255, 256, 65535, 65536, 4294967295, 4294967296)", Value::Bulk(Bytes::from_static(b"\x01\x7f\xcc\x80\xcc\xff\xcd\x01\x00\xcd\xff\xff\xce\x00\x01\x00\x00\xce\xff\xff\xff\xff\xcf\x00\x00\x00\x01\x00\x00\x00\x00"))),
        ("return cmsgpack.pack(-1, -32, -33, -128, -129, -32768, -32769, -2147483648, -2147483649)", Value::Bulk(Bytes::from_static(b"\xff\xe0\xd0\xdf\xd0\x80\xd1\xff\x7f\xd1\x80\x00\xd2\xff\xff\x7f\xff\xd2\x80\x00\x00\x00\xd3\xff\xff\xff\xff\x7f\xff\xff\xff"))),
        ("return cmsgpack.pack(0.5, 0.1, -1.5e300, 1/0, 0/0)", Value::Bulk(Bytes::from_static(b"\xca?\x00\x00\x00\xcb?\xb9\x99\x99\x99\x99\x99\x9a\xcb\xfeA\xeb-f\x00X5\xca\x7f\x80\x00\x00\xcb\xff\xf8\x00\x00\x00\x00\x00\x00"))),
        ("return cmsgpack.pack('', 'abc', string.rep('x', 31), string.rep('y', 32))", Value::Bulk(Bytes::from_static(b"\xa0\xa3abc\xbfxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\xd9 yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"))),
        ("return #cmsgpack.pack(string.rep('z', 300)) .. ',' .. #cmsgpack.pack(string.rep('z', 70000))", Value::Bulk(Bytes::from_static(b"303,70005"))),
        ("return cmsgpack.pack(true, false, nil, cjson.null, function() end)", Value::Bulk(Bytes::from_static(b"\xc3\xc2\xc0\xc0\xc0"))),
        ("return cmsgpack.pack({1, 2, 3}, {a = 1}, {}, {[1] = 1, [3] = 3})", Value::Bulk(Bytes::from_static(b"\x93\x01\x02\x03\x81\xa1a\x01\x90\x82\x01\x01\x03\x03"))),
        ("return #cmsgpack.pack({1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16})", Value::Int(19)),
        ("local t = {} local c = t for i = 1, 20 do c[1] = {} c = c[1] end return cmsgpack.pack(t)", Value::Bulk(Bytes::from_static(b"\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\xc0"))),
        ("return cmsgpack.pack()", err("ERR user_script:1: bad argument #0 to 'pack' (MessagePack pack needs input.) script: 6bc235afa55de88253e203cc5fe5844792e25209, on @user_script:1.")),
        ("return cmsgpack.pack(2^63)", Value::Bulk(Bytes::from_static(b"\xca_\x00\x00\x00"))),
        ("return cmsgpack.pack(-2^63)", Value::Bulk(Bytes::from_static(b"\xd3\x80\x00\x00\x00\x00\x00\x00\x00"))),
        ("return cmsgpack.pack(2^53 + 1.5)", Value::Bulk(Bytes::from_static(b"\xcf\x00 \x00\x00\x00\x00\x00\x02"))),
        ("return {cmsgpack.unpack(cmsgpack.pack(1, -2, 'x', true, 0.5 * 4))}", Value::Array(vec![Value::Int(1), Value::Int(-2), Value::Bulk(Bytes::from_static(b"x")), Value::Int(1), Value::Int(2)])),
        ("return cmsgpack.unpack(cmsgpack.pack({1, {2, {3}}}))[2][2][1]", Value::Int(3)),
        ("return cmsgpack.unpack(cmsgpack.pack({a = {b = 'c'}})).a.b", Value::Bulk(Bytes::from_static(b"c"))),
        ("return {cmsgpack.unpack('')}", Value::Array(vec![])),
        ("return {cmsgpack.unpack('\\205\\1')}", err("ERR user_script:1: Missing bytes in input. script: 4da9fbd31d226f226d552ab0f5198a12ec27f96b, on @user_script:1.")),
        ("return {cmsgpack.unpack('\\193')}", err("ERR user_script:1: Bad data format in input. script: 4370c4369e4c339c56b8ad64adc652c10d7953b5, on @user_script:1.")),
        ("return {cmsgpack.unpack('\\196\\1x')}", err("ERR user_script:1: Bad data format in input. script: f20b18065151da3a4d127ee00ce1467bc512413e, on @user_script:1.")),
        ("return {cmsgpack.unpack('\\207\\255\\255\\255\\255\\255\\255\\255\\255')}", Value::Array(vec![Value::Int(-1)])),
        ("return {cmsgpack.unpack('\\209\\255\\254')}", Value::Array(vec![Value::Int(-2)])),
        ("return {cmsgpack.unpack('\\202\\63\\0\\0\\0')}", Value::Array(vec![Value::Int(0)])),
        ("return {cmsgpack.unpack('\\219\\0\\0\\0\\2ab')}", Value::Array(vec![Value::Bulk(Bytes::from_static(b"ab"))])),
        ("return {cmsgpack.unpack('\\220\\0\\2\\1\\2')}", Value::Array(vec![Value::Array(vec![Value::Int(1), Value::Int(2)])])),
        ("return {cmsgpack.unpack('\\221\\255\\255\\255\\255\\1')}", err("ERR user_script:1: Missing bytes in input. script: e94712df26f7713bc1aa1694c5d7fae5d126187f, on @user_script:1.")),
        ("return {cmsgpack.unpack('\\129\\192\\1')}", err("ERR table index is nil script: b57640c96e3674704b8e4c9127630b3cf5524843, on @user_script:1.")),
        ("return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3))}", Value::Array(vec![Value::Int(1), Value::Int(1)])),
        ("return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 2)}", Value::Array(vec![Value::Int(-1), Value::Int(3)])),
        ("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 2)}", Value::Array(vec![Value::Int(2), Value::Int(1), Value::Int(2)])),
        ("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), 5, 1)}", Value::Array(vec![Value::Int(-1), Value::Int(2), Value::Int(3)])),
        ("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3), -1)}", err("ERR user_script:1: Invalid request to unpack with offset of 0 and limit of 3. script: 904ef98de3d07bdcce4edb4999a9cba196b865d9, on @user_script:1.")),
        ("return {cmsgpack.unpack_one(cmsgpack.pack(1, 2, 3), 10)}", err("ERR user_script:1: Start offset 10 greater than input length 3. script: f7c0820be0e26025196c4aa3a637ef9d9b186c16, on @user_script:1.")),
        ("return {cmsgpack.unpack_limit(cmsgpack.pack(1, 2, 3))}", err("ERR user_script:1: bad argument #2 to 'unpack_limit' (number expected, got no value) script: 9fb580b81f364c5bfe8eeaa027c7621293fff949, on @user_script:1.")),
        ("return {cmsgpack.unpack()}", err("ERR user_script:1: bad argument #1 to 'unpack' (string expected, got no value) script: 293064d82f29cbcbd9e806b28d1d580edad8d5a8, on @user_script:1.")),
    ];
    check(cases);
}

#[test]
fn deeply_nested_input_is_refused_before_the_native_stack_runs_out() {
    // Redis's own bound is its Lua stack (about 4000 levels); ours is 1000.
    let Value::Error(e) =
        eval("return #{cmsgpack.unpack(string.rep(string.char(0x91), 5000) .. string.char(1))}")
    else {
        panic!()
    };
    assert!(
        e.starts_with("ERR user_script:1: stack overflow (in function mp_decode_to_lua_array)"),
        "{e}"
    );
    assert_eq!(
        eval("return #{cmsgpack.unpack(string.rep(string.char(0x91), 900) .. string.char(1))}"),
        Value::Int(1)
    );
    let Value::Error(e) = eval("return cjson.decode(string.rep('[', 100000))") else {
        panic!()
    };
    assert!(
        e.starts_with("ERR user_script:1: Found too many nested data structures (1001)"),
        "{e}"
    );
    let Value::Error(e) = eval("return #{cmsgpack.unpack(string.rep(string.char(1), 8000))}")
    else {
        panic!()
    };
    assert!(
        e.starts_with("ERR user_script:1: stack overflow (too many return values at once"),
        "{e}"
    );
}

/// lua-cjson's configuration functions, against redis-server 7.0.15 (each case after a
/// `SCRIPT FLUSH` there, which resets the configuration as every run here does).
#[test]
fn cjson_configuration_matches_redis() {
    let bulk = |b: &'static [u8]| Value::Bulk(Bytes::from_static(b));
    let cases: &[(&str, Value)] = &[
        (
            "return {cjson.encode_max_depth(), cjson.decode_max_depth(), cjson.encode_number_precision(), cjson.encode_keep_buffer(), cjson.encode_invalid_numbers(), cjson.decode_invalid_numbers()}",
            Value::Array(vec![
                Value::Int(1000),
                Value::Int(1000),
                Value::Int(14),
                Value::Int(1),
                Value::Nil,
                Value::Int(1),
            ]),
        ),
        (
            "return {cjson.encode_sparse_array()}",
            Value::Array(vec![Value::Nil, Value::Int(2), Value::Int(10)]),
        ),
        ("return cjson.encode_keep_buffer(false)", Value::Nil),
        ("return cjson.encode_invalid_numbers('null')", bulk(b"null")),
        (
            "cjson.encode_invalid_numbers(true) return cjson.encode({1/0, -1/0, 0/0})",
            bulk(b"[inf,-inf,nan]"),
        ),
        (
            "cjson.encode_invalid_numbers('null') return cjson.encode({1/0, -1/0, 0/0})",
            bulk(b"[null,null,null]"),
        ),
        (
            "return cjson.encode_max_depth(0)",
            err(
                "ERR user_script:1: bad argument #1 to 'encode_max_depth' (expected integer between 1 and 2147483647) script: f40da52b0819d675b8802812b1c4504462426d31, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode_max_depth(1, 2)",
            err(
                "ERR user_script:1: bad argument #2 to 'encode_max_depth' (found too many arguments) script: ebf9f090ab5ddd4b21a6e44e9f074da030afcaf9, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode_keep_buffer('maybe')",
            err(
                "ERR user_script:1: bad argument #1 to 'encode_keep_buffer' (invalid option 'maybe') script: 784ec2b3ecc8cefb20ef2d614a006d9defe12fa4, on @user_script:1.",
            ),
        ),
        (
            "return cjson.encode_sparse_array(true, -1)",
            err(
                "ERR user_script:1: bad argument #1 to 'encode_sparse_array' (expected integer between 0 and 2147483647) script: fc87412626061342c56f3c5bbbc69d6dc9b90499, on @user_script:1.",
            ),
        ),
        (
            "cjson.encode_sparse_array(true) return cjson.encode({[1]=1,[20]=2})",
            bulk(b"{\x221\x22:1,\x2220\x22:2}"),
        ),
        (
            "cjson.encode_number_precision(3) return cjson.encode({3.14159})",
            bulk(b"[3.14]"),
        ),
        (
            "cjson.decode_invalid_numbers(false) return cjson.decode('[0x10]')",
            err(
                "ERR user_script:1: Expected value but found invalid number at character 2 script: 4424af8a5e3d0c629d07b56cdfe91cfa9fa53ba1, on @user_script:1.",
            ),
        ),
        (
            "cjson.decode_invalid_numbers(false) return cjson.decode('[nan]')",
            err(
                "ERR user_script:1: Expected value but found invalid token at character 2 script: e23c5fe0da59385f33c0990fd7b150c905d127ff, on @user_script:1.",
            ),
        ),
        (
            "cjson.decode_max_depth(1) return cjson.decode('[[1]]')",
            err(
                "ERR user_script:1: Found too many nested data structures (2) at character 2 script: d35591a57d788e003f2abdcf963d1f9b1548a2cb, on @user_script:1.",
            ),
        ),
        (
            "cjson.encode_max_depth(1) return cjson.encode({{1}})",
            err(
                "ERR user_script:1: Cannot serialise, excessive nesting (2) script: 4fb09f9fed577c5f27b4bc9421489077872be431, on @user_script:1.",
            ),
        ),
        // Not carried into the next run (Redis keeps it until SCRIPT FLUSH: see cjson_config).
        ("return cjson.encode_max_depth()", Value::Int(1000)),
    ];
    check(cases);
}

/// A map larger than mlua's reference stack (~8,000 live values in Lua 5.1) packs and
/// unpacks whole (it failed with "out of Lua stack" while the encoder held every pair).
#[test]
fn cmsgpack_packs_a_map_of_a_hundred_thousand_keys() {
    check(&[(
        "local m = {} for i = 1, 100000 do m[tostring(i)] = i end \
         local d = cmsgpack.unpack(cmsgpack.pack(m)) \
         local n = 0 for k, v in pairs(d) do assert(m[k] == v) n = n + 1 end return n",
        Value::Int(100000),
    )]);
}
