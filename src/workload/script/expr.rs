//! `\set` expressions: pgbench's arithmetic over integers and doubles, with its random
//! functions (PostgreSQL 15, pgbench(1), "Built-In Operators" and "Built-In Functions"; the
//! distributions as `src/bin/pgbench/pgbench.c` draws them: `getrand`,
//! `getExponentialRand`, `getGaussianRand`, `computeIterativeZipfian`).
//!
//! Integers are 64-bit and overflow is an error, as in pgbench ("bigint out of range"); an
//! operation with a double operand is done in doubles; `/` on two integers truncates toward
//! zero; `%` takes integers only.

use std::collections::HashMap;

/// A value: pgbench's integer or double.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Double(f64),
}

impl Value {
    /// The text substituted for `:name` in SQL (pgbench's simple query mode substitutes the
    /// value's text): integers in decimal, doubles in Rust's shortest round-trip form (`0.1`,
    /// `1e21`: a numeric literal to both servers), infinities and NaN as quoted float text.
    pub fn sql_text(&self) -> String {
        match self {
            Value::Int(i) => i.to_string(),
            Value::Double(d) if d.is_nan() => "'NaN'".into(),
            Value::Double(d) if d.is_infinite() => if *d > 0.0 { "'Infinity'" } else { "'-Infinity'" }.into(),
            Value::Double(d) => format!("{d:?}"),
        }
    }

    fn as_f64(self) -> f64 {
        match self {
            Value::Int(i) => i as f64,
            Value::Double(d) => d,
        }
    }

    /// An integer argument; a double is truncated toward zero when it fits (pgbench's
    /// `coerceToInt`).
    fn as_int(self, what: &str) -> Result<i64, String> {
        match self {
            Value::Int(i) => Ok(i),
            Value::Double(d) if d.is_finite() && d >= i64::MIN as f64 && d < i64::MAX as f64 => Ok(d.trunc() as i64),
            Value::Double(d) => Err(format!("{what}: double {d} is out of the bigint range")),
        }
    }
}

/// A binary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// The functions roachlab runs, with their arity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    /// `random(lb, ub)`: uniform integer in [lb, ub].
    Random,
    /// `random_exponential(lb, ub, parameter)`, parameter > 0.
    RandomExponential,
    /// `random_gaussian(lb, ub, parameter)`, parameter ≥ 2.
    RandomGaussian,
    /// `random_zipfian(lb, ub, parameter)`, parameter in [1.001, 1000] (pgbench 13+).
    RandomZipfian,
    Abs,
    Int,
    Double,
    Sqrt,
    Least,
    Greatest,
}

impl Func {
    /// The function named `name`, and its argument count (`None`: one or more).
    pub fn named(name: &str) -> Option<(Func, Option<usize>)> {
        Some(match name {
            "random" => (Func::Random, Some(2)),
            "random_exponential" => (Func::RandomExponential, Some(3)),
            "random_gaussian" => (Func::RandomGaussian, Some(3)),
            "random_zipfian" => (Func::RandomZipfian, Some(3)),
            "abs" => (Func::Abs, Some(1)),
            "int" => (Func::Int, Some(1)),
            "double" => (Func::Double, Some(1)),
            "sqrt" => (Func::Sqrt, Some(1)),
            "least" => (Func::Least, None),
            "greatest" => (Func::Greatest, None),
            _ => return None,
        })
    }
}

/// The names [`Func::named`] knows, for an error about an unknown one.
pub const FUNCTIONS: &str = "random, random_exponential, random_gaussian, random_zipfian, abs, int, double, sqrt, least, greatest";

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Const(Value),
    Var(String),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

/// Parses `text` (one `\set`'s expression). Errors give the byte offset in `text` and what was
/// expected there.
pub fn parse(text: &str) -> Result<Expr, (usize, String)> {
    let mut p = Parser { s: text.as_bytes(), pos: 0 };
    let e = p.sum()?;
    p.skip_ws();
    if p.pos < p.s.len() {
        return Err((p.pos, format!("unexpected `{}` after the expression", p.rest_word())));
    }
    Ok(e)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.pos).copied()
    }

    fn rest_word(&self) -> String {
        let rest = String::from_utf8_lossy(&self.s[self.pos..]);
        rest.split_whitespace().next().unwrap_or("").chars().take(20).collect()
    }

    /// sum := product (('+' | '-') product)*
    fn sum(&mut self) -> Result<Expr, (usize, String)> {
        let mut left = self.product()?;
        while let Some(c @ (b'+' | b'-')) = self.peek() {
            self.pos += 1;
            let right = self.product()?;
            left = Expr::Bin(if c == b'+' { Op::Add } else { Op::Sub }, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// product := unary (('*' | '/' | '%') unary)*
    fn product(&mut self) -> Result<Expr, (usize, String)> {
        let mut left = self.unary()?;
        while let Some(c @ (b'*' | b'/' | b'%')) = self.peek() {
            self.pos += 1;
            let right = self.unary()?;
            let op = match c {
                b'*' => Op::Mul,
                b'/' => Op::Div,
                _ => Op::Mod,
            };
            left = Expr::Bin(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    /// unary := ('-' | '+') unary | primary
    fn unary(&mut self) -> Result<Expr, (usize, String)> {
        match self.peek() {
            Some(b'-') => {
                self.pos += 1;
                Ok(Expr::Neg(Box::new(self.unary()?)))
            }
            Some(b'+') => {
                self.pos += 1;
                self.unary()
            }
            _ => self.primary(),
        }
    }

    fn ident(&mut self) -> String {
        let start = self.pos;
        while self.pos < self.s.len() && (self.s[self.pos].is_ascii_alphanumeric() || self.s[self.pos] == b'_') {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).into_owned()
    }

    /// primary := number | ':' name | name '(' args ')' | '(' sum ')'
    fn primary(&mut self) -> Result<Expr, (usize, String)> {
        let at = self.pos;
        match self.peek() {
            None => Err((self.pos, "the expression ends where a value was expected".into())),
            Some(b'(') => {
                self.pos += 1;
                let e = self.sum()?;
                if self.peek() != Some(b')') {
                    return Err((self.pos, "expected `)`".into()));
                }
                self.pos += 1;
                Ok(e)
            }
            Some(b':') => {
                self.pos += 1;
                let name = self.ident();
                if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
                    return Err((at, "expected a variable name after `:`".into()));
                }
                Ok(Expr::Var(name))
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => self.number(),
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let at = self.pos;
                let name = self.ident();
                let Some((func, arity)) = Func::named(&name.to_ascii_lowercase()) else {
                    return Err((at, format!("unknown function `{name}` (roachlab runs {FUNCTIONS})")));
                };
                if self.peek() != Some(b'(') {
                    return Err((self.pos, format!("expected `(` after `{name}`")));
                }
                self.pos += 1;
                let mut args = Vec::new();
                if self.peek() == Some(b')') {
                    self.pos += 1;
                } else {
                    loop {
                        args.push(self.sum()?);
                        match self.peek() {
                            Some(b',') => self.pos += 1,
                            Some(b')') => {
                                self.pos += 1;
                                break;
                            }
                            _ => return Err((self.pos, format!("expected `,` or `)` in the arguments of `{name}`"))),
                        }
                    }
                }
                let ok = match arity {
                    Some(n) => args.len() == n,
                    None => !args.is_empty(),
                };
                if !ok {
                    let want = arity.map_or("at least 1".to_string(), |n| n.to_string());
                    return Err((at, format!("`{name}` takes {want} argument(s), not {}", args.len())));
                }
                Ok(Expr::Call(func, args))
            }
            Some(_) => Err((self.pos, format!("unexpected `{}` where a value was expected", self.rest_word()))),
        }
    }

    fn number(&mut self) -> Result<Expr, (usize, String)> {
        let start = self.pos;
        let mut double = false;
        while self.pos < self.s.len() {
            let c = self.s[self.pos];
            if c.is_ascii_digit() {
                self.pos += 1;
            } else if c == b'.' {
                double = true;
                self.pos += 1;
            } else if (c == b'e' || c == b'E') && self.pos > start {
                double = true;
                self.pos += 1;
                if matches!(self.s.get(self.pos), Some(b'+' | b'-')) {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
        let text = String::from_utf8_lossy(&self.s[start..self.pos]);
        if double {
            text.parse::<f64>().map(|d| Expr::Const(Value::Double(d))).map_err(|_| (start, format!("`{text}` is not a number")))
        } else {
            text.parse::<i64>().map(|i| Expr::Const(Value::Int(i))).map_err(|_| (start, format!("`{text}` is out of the bigint range")))
        }
    }
}

impl Expr {
    /// The variables it reads.
    pub fn vars(&self, out: &mut Vec<String>) {
        match self {
            Expr::Const(_) => {}
            Expr::Var(v) => out.push(v.clone()),
            Expr::Neg(e) => e.vars(out),
            Expr::Bin(_, a, b) => {
                a.vars(out);
                b.vars(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.vars(out)),
        }
    }

    /// Its value with `vars`, drawing random numbers from `rng`. Errors as pgbench's do:
    /// overflow, division by zero, a bad distribution parameter, an empty range.
    pub fn eval(&self, vars: &HashMap<String, Value>, rng: &mut fastrand::Rng) -> Result<Value, String> {
        match self {
            Expr::Const(v) => Ok(*v),
            Expr::Var(name) => vars.get(name).copied().ok_or_else(|| format!("variable :{name} is not set")),
            Expr::Neg(e) => match e.eval(vars, rng)? {
                Value::Int(i) => i.checked_neg().map(Value::Int).ok_or_else(|| "bigint out of range".to_string()),
                Value::Double(d) => Ok(Value::Double(-d)),
            },
            Expr::Bin(op, a, b) => binary(*op, a.eval(vars, rng)?, b.eval(vars, rng)?),
            Expr::Call(f, args) => {
                let args: Vec<Value> = args.iter().map(|a| a.eval(vars, rng)).collect::<Result<_, _>>()?;
                call(*f, &args, rng)
            }
        }
    }
}

fn binary(op: Op, a: Value, b: Value) -> Result<Value, String> {
    let range = || "bigint out of range".to_string();
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => match op {
            Op::Add => x.checked_add(y).map(Value::Int).ok_or_else(range),
            Op::Sub => x.checked_sub(y).map(Value::Int).ok_or_else(range),
            Op::Mul => x.checked_mul(y).map(Value::Int).ok_or_else(range),
            Op::Div if y == 0 => Err("division by zero".into()),
            Op::Div => x.checked_div(y).map(Value::Int).ok_or_else(range),
            Op::Mod if y == 0 => Err("division by zero".into()),
            // pgbench: INT64_MIN % -1 is 0, not an overflow.
            Op::Mod => Ok(Value::Int(x.checked_rem(y).unwrap_or(0))),
        },
        _ => {
            let (x, y) = (a.as_f64(), b.as_f64());
            match op {
                Op::Add => Ok(Value::Double(x + y)),
                Op::Sub => Ok(Value::Double(x - y)),
                Op::Mul => Ok(Value::Double(x * y)),
                Op::Div if y == 0.0 => Err("division by zero".into()),
                Op::Div => Ok(Value::Double(x / y)),
                Op::Mod => Err("`%` takes integers, not doubles".into()),
            }
        }
    }
}

/// `(lb, ub)` of a random function, checked: lb ≤ ub and the range's size fits.
fn bounds(name: &str, args: &[Value]) -> Result<(i64, u64), String> {
    let lb = args[0].as_int(name)?;
    let ub = args[1].as_int(name)?;
    if lb > ub {
        return Err(format!("{name}({lb}, {ub}): empty range (lb > ub)"));
    }
    let size = (ub as i128 - lb as i128 + 1) as u128;
    if size > i64::MAX as u128 {
        return Err(format!("{name}({lb}, {ub}): the range is too large"));
    }
    Ok((lb, size as u64))
}

/// A double in (0, 1]: pgbench's `1.0 - pg_prng_double()`.
fn open_unit(rng: &mut fastrand::Rng) -> f64 {
    1.0 - rng.f64()
}

fn call(f: Func, args: &[Value], rng: &mut fastrand::Rng) -> Result<Value, String> {
    match f {
        Func::Random => {
            let (lb, size) = bounds("random", args)?;
            Ok(Value::Int(lb + rng.u64(0..size) as i64))
        }
        Func::RandomExponential => {
            let (lb, size) = bounds("random_exponential", args)?;
            let p = args[2].as_f64();
            if !(p > 0.0) {
                return Err(format!("random_exponential: parameter must be greater than 0, not {p}"));
            }
            let cut = (-p).exp();
            let r = -(cut + (1.0 - cut) * open_unit(rng)).ln() / p;
            Ok(Value::Int(lb + ((size as f64 * r) as u64).min(size - 1) as i64))
        }
        Func::RandomGaussian => {
            let (lb, size) = bounds("random_gaussian", args)?;
            let p = args[2].as_f64();
            if !(p >= 2.0) {
                return Err(format!("random_gaussian: parameter must be at least 2.0, not {p}"));
            }
            // Box-Muller, redrawn outside [-p, p).
            let stdev = loop {
                let (r1, r2) = (open_unit(rng), open_unit(rng));
                let s = (-2.0 * r1.ln()).sqrt() * (2.0 * std::f64::consts::PI * r2).sin();
                if (-p..p).contains(&s) {
                    break s;
                }
            };
            let r = (stdev + p) / (p * 2.0);
            Ok(Value::Int(lb + ((size as f64 * r) as u64).min(size - 1) as i64))
        }
        Func::RandomZipfian => {
            let (lb, size) = bounds("random_zipfian", args)?;
            let s = args[2].as_f64();
            if !(1.001..=1000.0).contains(&s) {
                return Err(format!("random_zipfian: parameter must be in [1.001, 1000], not {s}"));
            }
            // Devroye's rejection method ("Non-Uniform Random Variate Generation", p. 550).
            let b = 2f64.powf(s - 1.0);
            let x = loop {
                let (u, v) = (open_unit(rng), rng.f64());
                let x = u.powf(-1.0 / (s - 1.0)).floor();
                let t = (1.0 + 1.0 / x).powf(s - 1.0);
                if v * x * (t - 1.0) / (b - 1.0) <= t / b && x <= size as f64 {
                    break x;
                }
            };
            Ok(Value::Int(lb + x as i64 - 1))
        }
        Func::Abs => match args[0] {
            Value::Int(i) => i.checked_abs().map(Value::Int).ok_or_else(|| "bigint out of range".into()),
            Value::Double(d) => Ok(Value::Double(d.abs())),
        },
        Func::Int => args[0].as_int("int").map(Value::Int),
        Func::Double => Ok(Value::Double(args[0].as_f64())),
        Func::Sqrt => Ok(Value::Double(args[0].as_f64().sqrt())),
        Func::Least | Func::Greatest => {
            let least = f == Func::Least;
            if args.iter().all(|a| matches!(a, Value::Int(_))) {
                let ints = args.iter().map(|a| if let Value::Int(i) = a { *i } else { 0 });
                Ok(Value::Int(if least { ints.min() } else { ints.max() }.unwrap_or(0)))
            } else {
                let ds = args.iter().map(|a| a.as_f64());
                Ok(Value::Double(if least { ds.fold(f64::INFINITY, f64::min) } else { ds.fold(f64::NEG_INFINITY, f64::max) }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str) -> Result<Value, String> {
        let vars = HashMap::from([("scale".to_string(), Value::Int(10))]);
        parse(text).map_err(|(at, m)| format!("{at}: {m}"))?.eval(&vars, &mut fastrand::Rng::with_seed(7))
    }

    #[test]
    fn arithmetic_follows_pgbench() {
        assert_eq!(eval("10 * :scale"), Ok(Value::Int(100)));
        assert_eq!(eval("(1021 * 7) % (100000 * :scale) + 1"), Ok(Value::Int(7148)));
        assert_eq!(eval("-7 / 2"), Ok(Value::Int(-3)), "integer division truncates toward zero");
        assert_eq!(eval("7 / 2.0"), Ok(Value::Double(3.5)));
        assert_eq!(eval("- -3 + +2"), Ok(Value::Int(5)));
        assert_eq!(eval("1 - 2 - 3"), Ok(Value::Int(-4)), "left-associative");
        assert_eq!(eval("least(3, 1.5, 2)"), Ok(Value::Double(1.5)));
        assert_eq!(eval("greatest(3, 9, 2)"), Ok(Value::Int(9)));
        assert_eq!(eval("int(2.9) + abs(-2)"), Ok(Value::Int(4)));
        assert_eq!(eval("1 / 0"), Err("division by zero".into()));
        assert_eq!(eval("9223372036854775807 + 1"), Err("bigint out of range".into()));
        assert_eq!(eval("7.5 % 2"), Err("`%` takes integers, not doubles".into()));
        assert_eq!(Value::Double(0.1).sql_text(), "0.1");
        assert_eq!(Value::Double(1e21).sql_text(), "1e21");
    }

    #[test]
    fn syntax_errors_say_where_and_what() {
        assert_eq!(parse("1 +").unwrap_err().0, 3);
        assert!(parse("rand(1, 2)").unwrap_err().1.contains("unknown function `rand` (roachlab runs random,"));
        assert!(parse("random(1)").unwrap_err().1.contains("`random` takes 2 argument(s), not 1"));
        assert_eq!(parse("(1 + 2").unwrap_err(), (6, "expected `)`".to_string()));
        assert!(parse("1 2").unwrap_err().1.contains("unexpected `2`"));
        assert!(parse(": + 1").unwrap_err().1.contains("variable name"));
        assert!(parse("99999999999999999999").unwrap_err().1.contains("bigint range"));
    }

    /// Every distribution stays in [lb, ub]; the skewed ones favour lb as pgbench's do.
    #[test]
    fn distributions_stay_in_range_and_have_their_shape() {
        let mut rng = fastrand::Rng::with_seed(1);
        let vars = HashMap::new();
        for text in ["random(1, 10)", "random_exponential(1, 10, 2.5)", "random_gaussian(1, 10, 2.5)", "random_zipfian(1, 10, 1.5)"] {
            let e = parse(text).unwrap();
            let mut counts = [0u32; 10];
            for _ in 0..20_000 {
                let Value::Int(v) = e.eval(&vars, &mut rng).unwrap() else { panic!("{text}: not an integer") };
                assert!((1..=10).contains(&v), "{text}: {v}");
                counts[(v - 1) as usize] += 1;
            }
            match text {
                t if t.starts_with("random(") => assert!(counts.iter().all(|c| (1700..2300).contains(c)), "{t}: {counts:?}"),
                t if t.contains("gaussian") => assert!(counts[4] > 3 * counts[0] && counts[5] > 3 * counts[9], "{t}: {counts:?}"),
                t => assert!(counts[0] > 3 * counts[9] && counts[0] > counts[1], "{t}: {counts:?}"),
            }
        }
        for (text, why) in [
            ("random(5, 1)", "empty range"),
            ("random_exponential(1, 10, 0)", "greater than 0"),
            ("random_gaussian(1, 10, 1.5)", "at least 2.0"),
            ("random_zipfian(1, 10, 1.0)", "[1.001, 1000]"),
        ] {
            let e = parse(text).unwrap().eval(&vars, &mut rng).unwrap_err();
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
