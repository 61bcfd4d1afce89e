//! The Terraform functions templates commonly use, for hcl-rs's evaluator.
//!
//! Only pure functions whose arguments can be evaluated eagerly: hcl-rs evaluates every
//! argument before the call, so `try`/`can` cannot be expressed, and functions are plain `fn`
//! pointers, so `file`/`templatefile` (which need the archive) are not offered either.

use hcl::eval::{Context, FuncArgs, FuncDef, ParamType};
use hcl::{Map, Number, Value};

/// Names of the functions [`declare`] provides, sorted.
pub const SUPPORTED_FUNCTIONS: &[&str] = &[
    "abs",
    "base64decode",
    "base64encode",
    "ceil",
    "chomp",
    "coalesce",
    "coalescelist",
    "compact",
    "concat",
    "contains",
    "distinct",
    "element",
    "endswith",
    "flatten",
    "floor",
    "format",
    "indent",
    "join",
    "jsondecode",
    "jsonencode",
    "keys",
    "length",
    "lookup",
    "lower",
    "max",
    "merge",
    "min",
    "one",
    "replace",
    "slice",
    "split",
    "startswith",
    "substr",
    "title",
    "tobool",
    "tolist",
    "tomap",
    "tonumber",
    "toset",
    "tostring",
    "trim",
    "trimprefix",
    "trimspace",
    "trimsuffix",
    "upper",
    "values",
];

/// Declares every supported function in `ctx`.
pub(crate) fn declare(ctx: &mut Context<'_>) {
    use ParamType::{Any, Number as Num, String as Str};
    let s = || Str;
    let list = || ParamType::array_of(Any);
    let obj = || ParamType::object_of(Any);

    let fixed = |params: Vec<ParamType>, f: hcl::eval::Func| FuncDef::new(f, params);
    let variadic = |params: Vec<ParamType>, var: ParamType, f: hcl::eval::Func| {
        FuncDef::builder()
            .params(params)
            .variadic_param(var)
            .build(f)
    };

    ctx.declare_func("abs", fixed(vec![Num], abs));
    ctx.declare_func("base64decode", fixed(vec![s()], base64decode));
    ctx.declare_func("base64encode", fixed(vec![s()], base64encode));
    ctx.declare_func("ceil", fixed(vec![Num], ceil));
    ctx.declare_func("chomp", fixed(vec![s()], chomp));
    ctx.declare_func("coalesce", variadic(vec![], Any, coalesce));
    ctx.declare_func("coalescelist", variadic(vec![], Any, coalescelist));
    ctx.declare_func("compact", fixed(vec![list()], compact));
    ctx.declare_func("concat", variadic(vec![], Any, concat));
    ctx.declare_func("contains", fixed(vec![list(), Any], contains));
    ctx.declare_func("distinct", fixed(vec![list()], distinct));
    ctx.declare_func("element", fixed(vec![list(), Num], element));
    ctx.declare_func("endswith", fixed(vec![s(), s()], endswith));
    ctx.declare_func("flatten", fixed(vec![list()], flatten));
    ctx.declare_func("floor", fixed(vec![Num], floor));
    ctx.declare_func("format", variadic(vec![s()], Any, format));
    ctx.declare_func("indent", fixed(vec![Num, s()], indent));
    ctx.declare_func("join", variadic(vec![s()], Any, join));
    ctx.declare_func("jsondecode", fixed(vec![s()], jsondecode));
    ctx.declare_func("jsonencode", fixed(vec![Any], jsonencode));
    ctx.declare_func("keys", fixed(vec![obj()], keys));
    ctx.declare_func("length", fixed(vec![Any], length));
    ctx.declare_func("lookup", variadic(vec![obj(), s()], Any, lookup));
    ctx.declare_func("lower", fixed(vec![s()], lower));
    ctx.declare_func("max", variadic(vec![], Any, max));
    ctx.declare_func("merge", variadic(vec![], Any, merge));
    ctx.declare_func("min", variadic(vec![], Any, min));
    ctx.declare_func("one", fixed(vec![Any], one));
    ctx.declare_func("replace", fixed(vec![s(), s(), s()], replace));
    ctx.declare_func("slice", fixed(vec![list(), Num, Num], slice));
    ctx.declare_func("split", fixed(vec![s(), s()], split));
    ctx.declare_func("startswith", fixed(vec![s(), s()], startswith));
    ctx.declare_func("substr", fixed(vec![s(), Num, Num], substr));
    ctx.declare_func("title", fixed(vec![s()], title));
    ctx.declare_func("tobool", fixed(vec![Any], tobool));
    ctx.declare_func("tolist", fixed(vec![Any], tolist));
    ctx.declare_func("tomap", fixed(vec![Any], tomap));
    ctx.declare_func("tonumber", fixed(vec![Any], tonumber));
    ctx.declare_func("toset", fixed(vec![Any], toset));
    ctx.declare_func("tostring", fixed(vec![Any], tostring));
    ctx.declare_func("trim", fixed(vec![s(), s()], trim));
    ctx.declare_func("trimprefix", fixed(vec![s(), s()], trimprefix));
    ctx.declare_func("trimspace", fixed(vec![s()], trimspace));
    ctx.declare_func("trimsuffix", fixed(vec![s(), s()], trimsuffix));
    ctx.declare_func("upper", fixed(vec![s()], upper));
    ctx.declare_func("values", fixed(vec![obj()], values));
}

// Argument types are checked by `FuncDef` before a call; these helpers only fail on values
// the declared `ParamType` cannot express (e.g. "a list of strings").

fn str_arg(args: &FuncArgs, i: usize) -> Result<&str, String> {
    args.get(i)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("argument {} must be a string", i + 1))
}

fn num_arg(args: &FuncArgs, i: usize) -> Result<f64, String> {
    args.get(i)
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("argument {} must be a number", i + 1))
}

fn int_arg(args: &FuncArgs, i: usize) -> Result<i64, String> {
    let n = num_arg(args, i)?;
    if n.fract() != 0.0 {
        return Err(format!("argument {} must be a whole number", i + 1));
    }
    Ok(n as i64)
}

fn list_arg(args: &FuncArgs, i: usize) -> Result<&Vec<Value>, String> {
    args.get(i)
        .and_then(Value::as_array)
        .ok_or_else(|| format!("argument {} must be a list", i + 1))
}

fn number(n: f64) -> Value {
    // Whole numbers stay integers so they print without a fraction ("3", not "3.0").
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::Number(Number::from(n as i64))
    } else {
        Number::from_f64(n).map_or(Value::Null, Value::Number)
    }
}

/// A primitive as text, the way Terraform converts it to string.
fn primitive_string(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Null => Err("null value cannot be converted to string".to_owned()),
        _ => Err("a list or object cannot be converted to string".to_owned()),
    }
}

fn abs(args: FuncArgs) -> Result<Value, String> {
    Ok(number(num_arg(&args, 0)?.abs()))
}

fn ceil(args: FuncArgs) -> Result<Value, String> {
    Ok(number(num_arg(&args, 0)?.ceil()))
}

fn floor(args: FuncArgs) -> Result<Value, String> {
    Ok(number(num_arg(&args, 0)?.floor()))
}

fn min(args: FuncArgs) -> Result<Value, String> {
    fold_numbers(&args, f64::min)
}

fn max(args: FuncArgs) -> Result<Value, String> {
    fold_numbers(&args, f64::max)
}

fn fold_numbers(args: &FuncArgs, f: fn(f64, f64) -> f64) -> Result<Value, String> {
    let mut acc: Option<f64> = None;
    for value in args.iter() {
        let n = to_number(value)?
            .as_f64()
            .ok_or("arguments must be numbers")?;
        acc = Some(acc.map_or(n, |a| f(a, n)));
    }
    acc.map(number)
        .ok_or_else(|| "at least one argument is required".to_owned())
}

fn lower(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(str_arg(&args, 0)?.to_lowercase()))
}

fn upper(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(str_arg(&args, 0)?.to_uppercase()))
}

fn title(args: FuncArgs) -> Result<Value, String> {
    let mut out = String::new();
    let mut at_word_start = true;
    for c in str_arg(&args, 0)?.chars() {
        if at_word_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_word_start = !c.is_alphanumeric();
    }
    Ok(Value::from(out))
}

fn trimspace(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(str_arg(&args, 0)?.trim()))
}

fn chomp(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(
        str_arg(&args, 0)?.trim_end_matches(['\n', '\r']),
    ))
}

fn trim(args: FuncArgs) -> Result<Value, String> {
    let cut: Vec<char> = str_arg(&args, 1)?.chars().collect();
    Ok(Value::from(str_arg(&args, 0)?.trim_matches(cut.as_slice())))
}

fn trimprefix(args: FuncArgs) -> Result<Value, String> {
    let s = str_arg(&args, 0)?;
    Ok(Value::from(s.strip_prefix(str_arg(&args, 1)?).unwrap_or(s)))
}

fn trimsuffix(args: FuncArgs) -> Result<Value, String> {
    let s = str_arg(&args, 0)?;
    Ok(Value::from(s.strip_suffix(str_arg(&args, 1)?).unwrap_or(s)))
}

fn startswith(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(
        str_arg(&args, 0)?.starts_with(str_arg(&args, 1)?),
    ))
}

fn endswith(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(
        str_arg(&args, 0)?.ends_with(str_arg(&args, 1)?),
    ))
}

fn indent(args: FuncArgs) -> Result<Value, String> {
    let spaces = " ".repeat(usize::try_from(int_arg(&args, 0)?).map_err(|e| e.to_string())?);
    // Terraform indents every line but the first.
    let text = str_arg(&args, 1)?.replace('\n', &format!("\n{spaces}"));
    Ok(Value::from(text))
}

fn substr(args: FuncArgs) -> Result<Value, String> {
    let chars: Vec<char> = str_arg(&args, 0)?.chars().collect();
    let len = chars.len() as i64;
    let mut offset = int_arg(&args, 1)?;
    let length = int_arg(&args, 2)?;
    if offset < 0 {
        offset += len;
    }
    if offset < 0 || offset > len {
        return Err("offset out of range".to_owned());
    }
    let end = if length < 0 {
        len
    } else {
        (offset + length).min(len)
    };
    Ok(Value::from(
        chars[offset as usize..end as usize]
            .iter()
            .collect::<String>(),
    ))
}

fn replace(args: FuncArgs) -> Result<Value, String> {
    let s = str_arg(&args, 0)?;
    let search = str_arg(&args, 1)?;
    let replacement = str_arg(&args, 2)?;
    // `/…/` means a regular expression, as in Terraform.
    if search.len() >= 2 && search.starts_with('/') && search.ends_with('/') {
        let re = regex::Regex::new(&search[1..search.len() - 1]).map_err(|e| e.to_string())?;
        return Ok(Value::from(re.replace_all(s, replacement).into_owned()));
    }
    Ok(Value::from(s.replace(search, replacement)))
}

fn split(args: FuncArgs) -> Result<Value, String> {
    let sep = str_arg(&args, 0)?;
    let s = str_arg(&args, 1)?;
    if s.is_empty() {
        return Ok(Value::Array(vec![Value::from("")]));
    }
    Ok(Value::Array(s.split(sep).map(Value::from).collect()))
}

fn join(args: FuncArgs) -> Result<Value, String> {
    let sep = str_arg(&args, 0)?;
    let mut parts = Vec::new();
    for list in args.iter().skip(1) {
        let list = list
            .as_array()
            .ok_or("join takes lists after the separator")?;
        for item in list {
            parts.push(primitive_string(item)?);
        }
    }
    Ok(Value::from(parts.join(sep)))
}

fn format(args: FuncArgs) -> Result<Value, String> {
    let spec = str_arg(&args, 0)?;
    let mut rest = args.iter().skip(1);
    let mut out = String::new();
    let mut chars = spec.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let verb = chars.next().ok_or("format string ends with %")?;
        if verb == '%' {
            out.push('%');
            continue;
        }
        let value = rest
            .next()
            .ok_or("not enough arguments for format string")?;
        match verb {
            's' | 'v' => match value {
                Value::Array(_) | Value::Object(_) => {
                    out.push_str(&serde_json::to_string(value).map_err(|e| e.to_string())?)
                }
                other => out.push_str(&primitive_string(other)?),
            },
            'd' => {
                let n = to_number(value)?.as_f64().ok_or("%d needs a number")?;
                out.push_str(&format!("{}", n.trunc() as i64));
            }
            'f' => {
                let n = to_number(value)?.as_f64().ok_or("%f needs a number")?;
                out.push_str(&format!("{n:.6}"));
            }
            'q' => out.push_str(
                &serde_json::to_string(&primitive_string(value)?).map_err(|e| e.to_string())?,
            ),
            other => return Err(format!("unsupported format verb %{other}")),
        }
    }
    Ok(Value::from(out))
}

fn tostring(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        other => primitive_string(other).map(Value::from),
    }
}

fn to_number(value: &Value) -> Result<Value, String> {
    match value {
        Value::Number(_) | Value::Null => Ok(value.clone()),
        Value::String(s) => {
            let trimmed = s.trim();
            if let Ok(i) = trimmed.parse::<i64>() {
                return Ok(Value::from(i));
            }
            trimmed
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(number)
                .ok_or_else(|| format!("cannot convert {s:?} to a number"))
        }
        other => Err(format!("cannot convert {other} to a number")),
    }
}

fn tonumber(args: FuncArgs) -> Result<Value, String> {
    to_number(&args[0])
}

fn tobool(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Bool(_) | Value::Null => Ok(args[0].clone()),
        Value::String(s) if s == "true" => Ok(Value::Bool(true)),
        Value::String(s) if s == "false" => Ok(Value::Bool(false)),
        other => Err(format!("cannot convert {other} to a bool")),
    }
}

fn tolist(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Array(_) | Value::Null => Ok(args[0].clone()),
        _ => Err("tolist needs a list or set".to_owned()),
    }
}

fn toset(args: FuncArgs) -> Result<Value, String> {
    let list = args[0].as_array().ok_or("toset needs a list")?;
    let mut out = dedupe(list);
    // Terraform orders sets of strings lexically.
    if out.iter().all(Value::is_string) {
        out.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    }
    Ok(Value::Array(out))
}

fn tomap(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Object(_) | Value::Null => Ok(args[0].clone()),
        _ => Err("tomap needs an object or map".to_owned()),
    }
}

fn dedupe(list: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for item in list {
        if !out.contains(item) {
            out.push(item.clone());
        }
    }
    out
}

fn coalesce(args: FuncArgs) -> Result<Value, String> {
    args.iter()
        .find(|v| !v.is_null() && v.as_str() != Some(""))
        .cloned()
        .ok_or_else(|| "no non-null, non-empty-string arguments".to_owned())
}

fn coalescelist(args: FuncArgs) -> Result<Value, String> {
    Ok(args
        .iter()
        .find(|v| v.as_array().is_some_and(|a| !a.is_empty()))
        .cloned()
        .unwrap_or(Value::Array(Vec::new())))
}

fn compact(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(
        list_arg(&args, 0)?
            .iter()
            .filter(|v| !v.is_null() && v.as_str() != Some(""))
            .cloned()
            .collect(),
    ))
}

fn concat(args: FuncArgs) -> Result<Value, String> {
    let mut out = Vec::new();
    for list in args.iter() {
        out.extend(list.as_array().ok_or("concat takes lists")?.iter().cloned());
    }
    Ok(Value::Array(out))
}

fn contains(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::from(list_arg(&args, 0)?.contains(&args[1])))
}

fn distinct(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(dedupe(list_arg(&args, 0)?)))
}

fn element(args: FuncArgs) -> Result<Value, String> {
    let list = list_arg(&args, 0)?;
    if list.is_empty() {
        return Err("cannot use element function with an empty list".to_owned());
    }
    let index = int_arg(&args, 1)?;
    if index < 0 {
        return Err("index must not be negative".to_owned());
    }
    // Terraform wraps around.
    Ok(list[(index as usize) % list.len()].clone())
}

fn flatten(args: FuncArgs) -> Result<Value, String> {
    fn go(list: &[Value], out: &mut Vec<Value>) {
        for item in list {
            match item {
                Value::Array(inner) => go(inner, out),
                other => out.push(other.clone()),
            }
        }
    }
    let mut out = Vec::new();
    go(list_arg(&args, 0)?, &mut out);
    Ok(Value::Array(out))
}

fn one(args: FuncArgs) -> Result<Value, String> {
    match &args[0] {
        Value::Null => Ok(Value::Null),
        Value::Array(list) if list.is_empty() => Ok(Value::Null),
        Value::Array(list) if list.len() == 1 => Ok(list[0].clone()),
        Value::Array(_) => Err("must be a list with at most one element".to_owned()),
        _ => Err("one needs a list".to_owned()),
    }
}

fn slice(args: FuncArgs) -> Result<Value, String> {
    let list = list_arg(&args, 0)?;
    let start = usize::try_from(int_arg(&args, 1)?).map_err(|e| e.to_string())?;
    let end = usize::try_from(int_arg(&args, 2)?).map_err(|e| e.to_string())?;
    if start > end || end > list.len() {
        return Err("slice indices out of range".to_owned());
    }
    Ok(Value::Array(list[start..end].to_vec()))
}

fn length(args: FuncArgs) -> Result<Value, String> {
    let n = match &args[0] {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.len(),
        Value::Object(o) => o.len(),
        _ => return Err("length needs a string, list or map".to_owned()),
    };
    Ok(Value::from(n))
}

fn merge(args: FuncArgs) -> Result<Value, String> {
    let mut out = Map::new();
    for arg in args.iter() {
        match arg {
            Value::Null => {}
            Value::Object(obj) => {
                for (k, v) in obj {
                    out.insert(k.clone(), v.clone());
                }
            }
            _ => return Err("merge takes maps or objects".to_owned()),
        }
    }
    Ok(Value::Object(out))
}

fn sorted_entries(args: &FuncArgs) -> Result<Vec<(&String, &Value)>, String> {
    let obj = args[0].as_object().ok_or("argument must be a map")?;
    let mut entries: Vec<_> = obj.iter().collect();
    // Terraform returns keys (and values) in lexical key order.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    Ok(entries)
}

fn keys(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(
        sorted_entries(&args)?
            .into_iter()
            .map(|(k, _)| Value::from(k.as_str()))
            .collect(),
    ))
}

fn values(args: FuncArgs) -> Result<Value, String> {
    Ok(Value::Array(
        sorted_entries(&args)?
            .into_iter()
            .map(|(_, v)| v.clone())
            .collect(),
    ))
}

fn lookup(args: FuncArgs) -> Result<Value, String> {
    let obj = args[0].as_object().ok_or("argument 1 must be a map")?;
    let key = str_arg(&args, 1)?;
    match (obj.get(key), args.get(2)) {
        (Some(v), _) => Ok(v.clone()),
        (None, Some(default)) => Ok(default.clone()),
        (None, None) => Err(format!("key {key:?} not found and no default given")),
    }
}

fn jsonencode(args: FuncArgs) -> Result<Value, String> {
    serde_json::to_string(&args[0])
        .map(Value::from)
        .map_err(|e| e.to_string())
}

fn jsondecode(args: FuncArgs) -> Result<Value, String> {
    let json: serde_json::Value =
        serde_json::from_str(str_arg(&args, 0)?).map_err(|e| e.to_string())?;
    hcl::to_value(json).map_err(|e| e.to_string())
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64encode(args: FuncArgs) -> Result<Value, String> {
    let bytes = str_arg(&args, 0)?.as_bytes();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    Ok(Value::from(out))
}

fn base64decode(args: FuncArgs) -> Result<Value, String> {
    let input = str_arg(&args, 0)?.trim_end_matches('=');
    let mut bits: u32 = 0;
    let mut nbits = 0;
    let mut out = Vec::with_capacity(input.len() * 3 / 4);
    for c in input.bytes() {
        let v = BASE64
            .iter()
            .position(|&b| b == c)
            .ok_or("invalid base64 input")? as u32;
        bits = (bits << 6) | v;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
            bits &= (1 << nbits) - 1;
        }
    }
    String::from_utf8(out)
        .map(Value::from)
        .map_err(|_| "decoded base64 is not UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hcl::eval::Evaluate;

    fn eval(src: &str) -> Value {
        let mut ctx = Context::new();
        declare(&mut ctx);
        let expr: hcl::Expression = src.parse().unwrap();
        expr.evaluate(&ctx).unwrap()
    }

    #[test]
    fn string_functions() {
        assert_eq!(eval(r#"lower("AbC")"#), Value::from("abc"));
        assert_eq!(
            eval(r#"join("-", ["a", 1, true])"#),
            Value::from("a-1-true")
        );
        assert_eq!(
            eval(r#"format("%s=%d %q", "x", 3, "y")"#),
            Value::from("x=3 \"y\"")
        );
        assert_eq!(eval(r#"replace("a-b-c", "-", "_")"#), Value::from("a_b_c"));
        assert_eq!(
            eval(r##"replace("a1b22", "/[0-9]+/", "#")"##),
            Value::from("a#b#")
        );
        assert_eq!(eval(r#"substr("hello", 1, 3)"#), Value::from("ell"));
        assert_eq!(
            eval(r#"base64encode("hello!?")"#),
            Value::from("aGVsbG8hPw==")
        );
        assert_eq!(
            eval(r#"base64decode("aGVsbG8hPw==")"#),
            Value::from("hello!?")
        );
        assert_eq!(
            eval(r#"jsonencode(["a", "b"])"#),
            Value::from(r#"["a","b"]"#)
        );
        assert_eq!(eval(r#"coalesce("", "x")"#), Value::from("x"));
        assert_eq!(eval(r#"title("hello world")"#), Value::from("Hello World"));
    }

    #[test]
    fn collection_and_number_functions() {
        assert_eq!(eval(r#"length(merge({a = 1}, {b = 2}))"#), Value::from(2));
        assert_eq!(eval(r#"keys({b = 1, a = 2})"#), eval(r#"["a", "b"]"#));
        assert_eq!(eval(r#"tonumber("42") + 1"#), Value::from(43));
        assert_eq!(eval(r#"max(1, "5", 3)"#), Value::from(5));
        assert_eq!(eval(r#"element(["a", "b"], 3)"#), Value::from("b"));
        assert_eq!(
            eval(r#"flatten([["a"], ["b", ["c"]]])"#),
            eval(r#"["a", "b", "c"]"#)
        );
        assert_eq!(eval(r#"lookup({a = 1}, "b", 7)"#), Value::from(7));
        assert_eq!(eval(r#"jsondecode("[1, \"x\"]")"#), eval(r#"[1, "x"]"#));
    }
}
