//! Kubernetes helper functions for SQL: what detection rules and forensics queries need and
//! DataFusion lacks (prefix lists, image repositories, IP ranges).
//!
//! `starts_with_any(s, list)`, `image_repos(list)`, `ip_in_cidrs(ip, list)`, `is_public_ip(ip)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, ListArray, ListBuilder, StringArray,
    StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Registers every helper on `ctx`.
pub fn register(ctx: &SessionContext) {
    for f in [
        Helper::StartsWithAny,
        Helper::ImageRepos,
        Helper::IpInCidrs,
        Helper::IsPublicIp,
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(HelperUdf::new(f)));
    }
    // Replaces DataFusion's `date_trunc` (same name, signature and results) with one that is
    // plain arithmetic on the lake's UTC timestamps.
    ctx.register_udf(ScalarUDF::new_from_impl(
        crate::date_trunc::UtcDateTrunc::new(),
    ));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Helper {
    StartsWithAny,
    ImageRepos,
    IpInCidrs,
    IsPublicIp,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct HelperUdf {
    helper: Helper,
    signature: Signature,
}

impl HelperUdf {
    fn new(helper: Helper) -> Self {
        HelperUdf {
            helper,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    /// Argument kinds: `false` = string, `true` = list of strings.
    fn args(&self) -> &'static [bool] {
        match self.helper {
            Helper::StartsWithAny | Helper::IpInCidrs => &[false, true],
            Helper::ImageRepos => &[true],
            Helper::IsPublicIp => &[false],
        }
    }
}

fn list_utf8() -> DataType {
    DataType::new_list(DataType::Utf8, true)
}

impl ScalarUDFImpl for HelperUdf {
    fn name(&self) -> &str {
        match self.helper {
            Helper::StartsWithAny => "starts_with_any",
            Helper::ImageRepos => "image_repos",
            Helper::IpInCidrs => "ip_in_cidrs",
            Helper::IsPublicIp => "is_public_ip",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let want = self.args();
        if arg_types.len() != want.len() {
            return plan_err!("{} takes {} argument(s)", self.name(), want.len());
        }
        arg_types
            .iter()
            .zip(want)
            .map(|(t, is_list)| match (t, is_list) {
                (
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null,
                    false,
                ) => Ok(DataType::Utf8),
                (
                    DataType::List(_)
                    | DataType::LargeList(_)
                    | DataType::FixedSizeList(..)
                    | DataType::Null,
                    true,
                ) => Ok(list_utf8()),
                _ => plan_err!(
                    "{}: expected {}, got {t}",
                    self.name(),
                    if *is_list {
                        "a list of strings"
                    } else {
                        "a string"
                    }
                ),
            })
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.helper {
            Helper::ImageRepos => list_utf8(),
            _ => DataType::Boolean,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let out: ArrayRef = match self.helper {
            Helper::StartsWithAny => string_vs_list(&args.args, rows, |s, items| {
                items.iter().any(|p| s.starts_with(p.as_str()))
            })?,
            Helper::IpInCidrs => string_vs_list(&args.args, rows, |s, items| {
                s.parse::<IpAddr>()
                    .is_ok_and(|ip| items.iter().any(|c| cidr_contains(c, ip)))
            })?,
            Helper::IsPublicIp => {
                let s = strings(&args.args[0].to_array(rows)?)?;
                Arc::new(
                    s.iter()
                        .map(|v| v.map(|v| v.parse::<IpAddr>().is_ok_and(is_public)))
                        .collect::<BooleanArray>(),
                )
            }
            Helper::ImageRepos => {
                let lists = lists(&args.args[0].to_array(rows)?)?;
                let mut b = ListBuilder::new(StringBuilder::new());
                for i in 0..lists.len() {
                    if lists.is_null(i) {
                        b.append_null();
                        continue;
                    }
                    let items = strings(&lists.value(i))?;
                    for item in items.iter() {
                        b.values().append_option(item.map(image_repository));
                    }
                    b.append(true);
                }
                Arc::new(b.finish())
            }
        };
        Ok(ColumnarValue::Array(out))
    }
}

fn strings(a: &ArrayRef) -> Result<StringArray> {
    Ok(cast(a, &DataType::Utf8)?.as_string::<i32>().clone())
}

fn lists(a: &ArrayRef) -> Result<ListArray> {
    Ok(cast(a, &list_utf8())?.as_list::<i32>().clone())
}

/// Row-wise `f(string, items of the list)`; NULL string → NULL, NULL list → no items.
fn string_vs_list(
    args: &[ColumnarValue],
    rows: usize,
    f: impl Fn(&str, &[String]) -> bool,
) -> Result<ArrayRef> {
    let s = strings(&args[0].to_array(rows)?)?;
    let mut out = BooleanBuilder::with_capacity(s.len());
    // Rule parameters are constant lists: decode a scalar list once, not per row.
    if let ColumnarValue::Scalar(list) = &args[1] {
        let l = lists(&list.to_array_of_size(1)?)?;
        let items: Vec<String> = if l.is_null(0) {
            Vec::new()
        } else {
            strings(&l.value(0))?
                .iter()
                .flatten()
                .map(str::to_owned)
                .collect()
        };
        for v in s.iter() {
            out.append_option(v.map(|v| f(v, &items)));
        }
        return Ok(Arc::new(out.finish()));
    }
    let l = lists(&args[1].to_array(rows)?)?;
    for i in 0..s.len() {
        if s.is_null(i) {
            out.append_null();
        } else if l.is_null(i) {
            out.append_value(f(s.value(i), &[]));
        } else {
            let items: Vec<String> = strings(&l.value(i))?
                .iter()
                .flatten()
                .map(str::to_owned)
                .collect();
            out.append_value(f(s.value(i), &items));
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `registry:5000/team/app:1.2@sha256:…` → `registry:5000/team/app` (tag and digest dropped;
/// a `:` before the last `/` is a registry port, not a tag).
pub fn image_repository(image: &str) -> &str {
    let no_digest = image.split_once('@').map_or(image, |(repo, _)| repo);
    let last_slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    match no_digest[last_slash..].find(':') {
        Some(colon) => &no_digest[..last_slash + colon],
        None => no_digest,
    }
}

/// `10.0.0.0/8` contains `ip`; a plain address matches itself. Unparseable entries match nothing.
pub fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let cidr = cidr.trim();
    let (addr, bits) = match cidr.split_once('/') {
        Some((a, b)) => match b.parse::<u32>() {
            Ok(b) => (a, Some(b)),
            Err(_) => return false,
        },
        None => (cidr, None),
    };
    match (addr.parse::<IpAddr>(), ip) {
        (Ok(IpAddr::V4(net)), IpAddr::V4(ip)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (Ok(IpAddr::V6(net)), IpAddr::V6(ip)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(net) & mask == u128::from(ip) & mask
        }
        (Ok(IpAddr::V4(net)), IpAddr::V6(ip)) => ip
            .to_ipv4_mapped()
            .is_some_and(|v4| cidr_contains(&format!("{net}/{}", bits.unwrap_or(32)), v4.into())),
        _ => false,
    }
}

/// Globally routable: not private (RFC 1918), loopback, link-local, CGNAT (100.64/10),
/// unspecified, broadcast, multicast or IPv6 unique-local. The documentation ranges
/// (192.0.2/24, 198.51.100/24, 203.0.113/24) count as public: samples and tests use them to
/// stand in for internet addresses.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_repository_drops_tag_and_digest_not_port() {
        assert_eq!(image_repository("nginx"), "nginx");
        assert_eq!(image_repository("nginx:1.7.9"), "nginx");
        assert_eq!(
            image_repository("registry:5000/team/app:1.2"),
            "registry:5000/team/app"
        );
        assert_eq!(
            image_repository("registry:5000/team/app"),
            "registry:5000/team/app"
        );
        assert_eq!(
            image_repository("registry.k8s.io/kube-proxy:v1.31.2@sha256:abc"),
            "registry.k8s.io/kube-proxy"
        );
    }

    #[test]
    fn cidrs_and_public_ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(cidr_contains("10.0.0.0/8", ip("10.1.2.3")));
        assert!(!cidr_contains("10.0.0.0/8", ip("11.1.2.3")));
        assert!(cidr_contains("185.220.101.47", ip("185.220.101.47")));
        assert!(cidr_contains("2001:db8::/32", ip("2001:db8::1")));
        assert!(cidr_contains("0.0.0.0/0", ip("8.8.8.8")));
        assert!(!cidr_contains("garbage", ip("8.8.8.8")));
        assert!(is_public(ip("8.8.8.8")));
        assert!(is_public(ip("203.0.113.77")));
        for private in [
            "10.0.0.1",
            "192.168.1.1",
            "172.16.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
    }
}
