//! Rate-limit quotas: "N/period" (e.g. `30/1m`), enforced as a generic cell
//! rate (GCRA): N calls at once, then one every period/N.

use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub count: u32,
    pub period: Duration,
}

impl Quota {
    pub fn parse(text: &str) -> Result<Quota, String> {
        let (count, period) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}`: expected COUNT/PERIOD, e.g. 30/1m"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{text}`: COUNT must be a whole number"))?;
        let period =
            humantime::parse_duration(period.trim()).map_err(|e| format!("`{text}`: {e}"))?;
        if count == 0 || period.is_zero() {
            return Err(format!("`{text}`: COUNT and PERIOD must be positive"));
        }
        Ok(Quota { count, period })
    }

    /// Time between two calls at the sustained rate.
    pub fn interval(&self) -> Duration {
        (self.period / self.count).max(Duration::from_nanos(1))
    }
}

impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.count,
            humantime::format_duration(self.period)
        )
    }
}

/// The rate-limited operations, each with its own quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Register,
    Login,
    Refresh,
    Validate,
    Exchange,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Register,
        Action::Login,
        Action::Refresh,
        Action::Validate,
        Action::Exchange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Register => "register",
            Action::Login => "login",
            Action::Refresh => "refresh",
            Action::Validate => "validate",
            Action::Exchange => "exchange",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_parse_and_refuse_nonsense() {
        assert_eq!(
            Quota::parse("30/1m").unwrap(),
            Quota {
                count: 30,
                period: Duration::from_secs(60)
            }
        );
        assert_eq!(
            Quota::parse("4/2s").unwrap().interval(),
            Duration::from_millis(500)
        );
        for bad in ["", "30", "0/1m", "x/1m", "5/0s", "5/soon"] {
            assert!(Quota::parse(bad).is_err(), "{bad}");
        }
    }
}
