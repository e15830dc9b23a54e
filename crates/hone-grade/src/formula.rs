//! `calculate_output` of a `multi` grader: arithmetic over sub-grader rewards with exactly the
//! operators and functions of OpenAI's multi grader (`+ - * / ^`, parentheses, `min max abs floor
//! ceil exp sqrt log`). Hand-written rather than a general expression crate so that a formula hone
//! accepts is one the public spec accepts too, and errors name the byte where parsing stopped.

use std::collections::BTreeMap;

/// A parsed formula.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Var(String),
    Neg(Box<Expr>),
    Bin(Op, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Func {
    Min,
    Max,
    Abs,
    Floor,
    Ceil,
    Exp,
    Sqrt,
    Log,
}

impl Func {
    fn from_name(s: &str) -> Option<Func> {
        Some(match s {
            "min" => Func::Min,
            "max" => Func::Max,
            "abs" => Func::Abs,
            "floor" => Func::Floor,
            "ceil" => Func::Ceil,
            "exp" => Func::Exp,
            "sqrt" => Func::Sqrt,
            "log" => Func::Log,
            _ => return None,
        })
    }
    fn variadic(self) -> bool {
        matches!(self, Func::Min | Func::Max)
    }
}

/// Where and why parsing stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub at: usize,
    pub msg: String,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, ParseError> {
        Err(ParseError {
            at: self.i,
            msg: msg.into(),
        })
    }
    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.term()?;
        loop {
            let op = match self.peek() {
                Some(b'+') => Op::Add,
                Some(b'-') => Op::Sub,
                _ => return Ok(left),
            };
            self.i += 1;
            left = Expr::Bin(op, Box::new(left), Box::new(self.term()?));
        }
    }
    fn term(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.power()?;
        loop {
            let op = match self.peek() {
                Some(b'*') => Op::Mul,
                Some(b'/') => Op::Div,
                _ => return Ok(left),
            };
            self.i += 1;
            left = Expr::Bin(op, Box::new(left), Box::new(self.power()?));
        }
    }
    /// `^` binds tighter than unary minus on its left (`-2^2` = -4) and is right-associative.
    fn power(&mut self) -> Result<Expr, ParseError> {
        if self.eat(b'-') {
            return Ok(Expr::Neg(Box::new(self.power()?)));
        }
        if self.eat(b'+') {
            return self.power();
        }
        let base = self.primary()?;
        if self.eat(b'^') {
            return Ok(Expr::Bin(Op::Pow, Box::new(base), Box::new(self.power()?)));
        }
        Ok(base)
    }
    fn primary(&mut self) -> Result<Expr, ParseError> {
        match self.peek() {
            None => self.err("the formula ends where a value was expected"),
            Some(b'(') => {
                self.i += 1;
                let e = self.expr()?;
                if !self.eat(b')') {
                    return self.err("expected `)`");
                }
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.')
                {
                    self.i += 1;
                }
                if self.i < self.s.len() && matches!(self.s[self.i], b'e' | b'E') {
                    let save = self.i;
                    self.i += 1;
                    if self.i < self.s.len() && matches!(self.s[self.i], b'+' | b'-') {
                        self.i += 1;
                    }
                    let digits = self.i;
                    while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                        self.i += 1;
                    }
                    if self.i == digits {
                        self.i = save;
                    }
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                match text.parse::<f64>() {
                    Ok(v) => Ok(Expr::Num(v)),
                    Err(_) => {
                        self.i = start;
                        self.err(format!("`{text}` is not a number"))
                    }
                }
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
                {
                    self.i += 1;
                }
                let name = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                if self.peek() != Some(b'(') {
                    return Ok(Expr::Var(name.to_string()));
                }
                let Some(f) = Func::from_name(name) else {
                    self.i = start;
                    return self.err(format!(
                        "unknown function `{name}` (known: min, max, abs, floor, ceil, exp, sqrt, log)"
                    ));
                };
                self.i += 1;
                let mut args = vec![self.expr()?];
                while self.eat(b',') {
                    args.push(self.expr()?);
                }
                if !self.eat(b')') {
                    return self.err("expected `,` or `)`");
                }
                if !f.variadic() && args.len() != 1 {
                    self.i = start;
                    return self.err(format!("`{name}` takes one argument, not {}", args.len()));
                }
                Ok(Expr::Call(f, args))
            }
            Some(_) => {
                let c = std::str::from_utf8(&self.s[self.i..])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .unwrap_or('?');
                self.err(format!("unexpected `{c}`"))
            }
        }
    }
}

/// Parse a formula.
pub fn parse(src: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        s: src.as_bytes(),
        i: 0,
    };
    let e = p.expr()?;
    if p.peek().is_some() {
        let c = src[p.i..].chars().next().unwrap_or('?');
        return p.err(format!("unexpected `{c}` after the formula"));
    }
    Ok(e)
}

impl Expr {
    /// Every variable the formula reads, in order of first use.
    pub fn variables(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }
    fn collect<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Num(_) => {}
            Expr::Var(v) => {
                if !out.contains(&v.as_str()) {
                    out.push(v);
                }
            }
            Expr::Neg(e) => e.collect(out),
            Expr::Bin(_, a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.collect(out)),
        }
    }

    /// The value with `vars` bound; `Err` names an unbound variable or a result that is not a
    /// finite number (division by zero, log of a negative).
    pub fn eval(&self, vars: &BTreeMap<String, f64>) -> Result<f64, String> {
        let v = match self {
            Expr::Num(x) => *x,
            Expr::Var(name) => *vars
                .get(name)
                .ok_or_else(|| format!("unknown variable `{name}`"))?,
            Expr::Neg(e) => -e.eval(vars)?,
            Expr::Bin(op, a, b) => {
                let (x, y) = (a.eval(vars)?, b.eval(vars)?);
                match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    Op::Div if y == 0.0 => return Err("division by zero".into()),
                    Op::Div => x / y,
                    Op::Pow => x.powf(y),
                }
            }
            Expr::Call(f, args) => {
                let xs = args
                    .iter()
                    .map(|a| a.eval(vars))
                    .collect::<Result<Vec<_>, _>>()?;
                let x = xs[0];
                match f {
                    Func::Min => xs.iter().copied().fold(f64::INFINITY, f64::min),
                    Func::Max => xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                    Func::Abs => x.abs(),
                    Func::Floor => x.floor(),
                    Func::Ceil => x.ceil(),
                    Func::Exp => x.exp(),
                    Func::Sqrt => x.sqrt(),
                    Func::Log => x.ln(),
                }
            }
        };
        if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("the formula gave {v}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str, vars: &[(&str, f64)]) -> Result<f64, String> {
        let m = vars.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        parse(s)
            .map_err(|e| format!("parse@{}: {}", e.at, e.msg))?
            .eval(&m)
    }

    #[test]
    fn precedence_associativity_and_functions() {
        assert_eq!(ev("1 + 2 * 3", &[]), Ok(7.0));
        assert_eq!(ev("(1 + 2) * 3", &[]), Ok(9.0));
        assert_eq!(ev("2 ^ 3 ^ 2", &[]), Ok(512.0));
        assert_eq!(ev("-2 ^ 2", &[]), Ok(-4.0));
        assert_eq!(ev("8 / 4 / 2", &[]), Ok(1.0));
        assert_eq!(ev("10 - 4 - 3", &[]), Ok(3.0));
        assert_eq!(ev("min(a, b, 0.7)", &[("a", 0.9), ("b", 0.8)]), Ok(0.7));
        assert_eq!(ev("max(a)", &[("a", 0.25)]), Ok(0.25));
        assert_eq!(ev("floor(2.7) + ceil(2.1) + abs(-1)", &[]), Ok(6.0));
        assert_eq!(ev("log(exp(2))", &[]), Ok(2.0));
        assert_eq!(ev("sqrt(16)", &[]), Ok(4.0));
        assert_eq!(ev("1.5e1", &[]), Ok(15.0));
    }

    #[test]
    fn errors_name_the_place_or_the_problem() {
        assert_eq!(parse("1 +").unwrap_err().at, 3);
        assert_eq!(parse("a * (b + c").unwrap_err().msg, "expected `)`");
        assert!(
            parse("pow(2, 3)")
                .unwrap_err()
                .msg
                .contains("unknown function")
        );
        assert!(parse("abs(1, 2)").unwrap_err().msg.contains("one argument"));
        assert!(parse("a b").unwrap_err().msg.contains("after the formula"));
        assert!(parse("a % b").is_err());
        let e = parse("a × b").unwrap_err();
        assert_eq!(
            (e.at, e.msg.as_str()),
            (2, "unexpected `×` after the formula")
        );
        let e = parse("× b").unwrap_err();
        assert_eq!((e.at, e.msg.as_str()), (0, "unexpected `×`"));
        assert_eq!(
            ev("1 / (a - a)", &[("a", 1.0)]),
            Err("division by zero".into())
        );
        assert!(ev("log(0 - 1)", &[]).unwrap_err().contains("NaN"));
        assert_eq!(ev("c", &[]), Err("unknown variable `c`".into()));
        assert_eq!(parse("min(a, b) + a").unwrap().variables(), vec!["a", "b"]);
    }
}
