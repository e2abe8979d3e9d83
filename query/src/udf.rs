//! Kubernetes helper functions for SQL: what detection rules and forensics queries need and
//! DataFusion lacks (prefix lists, image repositories, IP ranges).
//!
//! `starts_with_any(s, list)`, `image_repos(list)`, `ip_in_cidrs(ip, list)`, `is_public_ip(ip)`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, ListArray, ListBuilder, StringArray,
    StringBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use ipnet::{IpNet, Ipv4Net};

/// Registers every helper on `ctx`.
pub fn register(ctx: &SessionContext) {
    for udf in udfs() {
        ctx.register_udf(udf);
    }
}

/// Every helper, and the `date_trunc` that replaces DataFusion's (same name, signature and
/// results; plain arithmetic on the lake's UTC timestamps). One list for local sessions and the
/// Ballista cluster's.
pub fn udfs() -> Vec<ScalarUDF> {
    let mut udfs: Vec<ScalarUDF> = [
        Helper::StartsWithAny,
        Helper::ImageRepos,
        Helper::IpInCidrs,
        Helper::IsPublicIp,
    ]
    .into_iter()
    .map(|f| ScalarUDF::new_from_impl(HelperUdf::new(f)))
    .collect();
    udfs.push(ScalarUDF::new_from_impl(
        crate::date_trunc::UtcDateTrunc::new(),
    ));
    udfs
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
    cidr_sets: CidrCache,
}

/// `ip_in_cidrs`' parsed constant lists, by list: a rule's list is parsed at its first batch,
/// not at every batch (and never per row). Not part of the function's identity.
#[derive(Debug, Default)]
struct CidrCache(Mutex<HashMap<ScalarValue, Arc<CidrSet>>>);

/// Distinct constant lists kept; a session runs a few dozen rules, each with one or two lists.
const CIDR_CACHE_LISTS: usize = 64;

impl PartialEq for CidrCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for CidrCache {}

impl std::hash::Hash for CidrCache {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl CidrCache {
    fn get(&self, list: &ScalarValue) -> Result<Arc<CidrSet>> {
        if let Some(set) = self.0.lock().expect("cidr cache").get(list) {
            return Ok(set.clone());
        }
        let l = lists(&list.to_array_of_size(1)?)?;
        let set = Arc::new(if l.is_null(0) {
            CidrSet::default()
        } else {
            cidr_set(&strings(&l.value(0))?)?
        });
        let mut cache = self.0.lock().expect("cidr cache");
        if cache.len() >= CIDR_CACHE_LISTS {
            cache.clear();
        }
        cache.insert(list.clone(), set.clone());
        Ok(set)
    }
}

/// The non-null entries of `items` as a [`CidrSet`]; a bad entry is a query error naming it,
/// the query's (a plan error: [`crate::classify`] makes it the caller's fault, exit code 2).
fn cidr_set(items: &StringArray) -> Result<CidrSet> {
    match CidrSet::parse(items.iter().flatten()) {
        Ok(set) => Ok(set),
        Err(e) => plan_err!("ip_in_cidrs: {e}"),
    }
}

impl HelperUdf {
    fn new(helper: Helper) -> Self {
        HelperUdf {
            helper,
            signature: Signature::user_defined(Volatility::Immutable),
            cidr_sets: CidrCache::default(),
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

    /// `ip_in_cidrs` with a constant list: the list is parsed while planning, so a bad entry
    /// is a plan error (the query's fault) rather than a failure of the scan that runs it.
    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        if self.helper == Helper::IpInCidrs
            && let Some(Expr::Literal(list, _)) = args.get(1)
            && matches!(list, ScalarValue::List(_))
        {
            self.cidr_sets.get(list)?;
        }
        Ok(ExprSimplifyResult::Original(args))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let out: ArrayRef = match self.helper {
            Helper::StartsWithAny => string_vs_list(&args.args, rows, |s, items| {
                items.iter().any(|p| s.starts_with(p.as_str()))
            })?,
            Helper::IpInCidrs => {
                let s = strings(&args.args[0].to_array(rows)?)?;
                match &args.args[1] {
                    // Rule parameters: one constant list for every row.
                    ColumnarValue::Scalar(list) => {
                        let set = self.cidr_sets.get(list)?;
                        Arc::new(
                            s.iter()
                                .map(|v| v.map(|v| set.contains_str(v)))
                                .collect::<BooleanArray>(),
                        )
                    }
                    // A list per row (a column): parsed per row, there is nothing to share.
                    ColumnarValue::Array(a) => {
                        let l = lists(a)?;
                        let mut out = BooleanBuilder::with_capacity(s.len());
                        for i in 0..s.len() {
                            if s.is_null(i) {
                                out.append_null();
                            } else if l.is_null(i) {
                                out.append_value(false);
                            } else {
                                let set = cidr_set(&strings(&l.value(i))?)?;
                                out.append_value(set.contains_str(s.value(i)));
                            }
                        }
                        Arc::new(out.finish())
                    }
                }
            }
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

/// A list of networks (`10.0.0.0/8`, `2001:db8::/32`, or plain addresses), parsed once and kept
/// as sorted, merged address ranges: a lookup is a binary search, not a parse of every entry.
/// IPv4-mapped IPv6 (`::ffff:10.1.2.3`, `::ffff:10.0.0.0/104`) counts as IPv4 on both sides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

/// An entry of a CIDR list that is neither an address nor a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR (like 10.0.0.0/8 or 2001:db8::/32)")]
pub struct BadCidr(pub String);

impl CidrSet {
    /// Parses every entry (surrounding white space ignored); the first bad one is the error.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<CidrSet, BadCidr> {
        let mut set = CidrSet::default();
        for entry in entries {
            let text = entry.trim();
            let net = match text.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => text
                    .parse::<IpAddr>()
                    .map(IpNet::from)
                    .map_err(|_| BadCidr(entry.to_owned()))?,
            };
            match unmap_net(net) {
                IpNet::V4(n) => set.v4.push((n.network().into(), n.broadcast().into())),
                IpNet::V6(n) => set.v6.push((n.network().into(), n.broadcast().into())),
            }
        }
        merge(&mut set.v4);
        merge(&mut set.v6);
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(ip) => in_ranges(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => in_ranges(&self.v6, u128::from(ip)),
        }
    }

    /// Whether `ip` is an address (IPv4 or IPv6) in the set; text that is not an address is not.
    pub fn contains_str(&self, ip: &str) -> bool {
        ip.parse::<IpAddr>().is_ok_and(|ip| self.contains(ip))
    }
}

/// `::ffff:a.b.c.d/n` (n >= 96) is the IPv4 network `a.b.c.d/(n-96)`.
fn unmap_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, n.prefix_len() - 96)
                .map(IpNet::V4)
                .unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

/// Sorts inclusive ranges and joins the ones that overlap or touch.
fn merge<T: Copy + Ord + num_step::Succ>(ranges: &mut Vec<(T, T)>) {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges.iter() {
        match out.last_mut() {
            Some(last) if last.1.succ().is_none_or(|next| lo <= next) => {
                last.1 = last.1.max(hi);
            }
            _ => out.push((lo, hi)),
        }
    }
    *ranges = out;
}

fn in_ranges<T: Copy + Ord>(ranges: &[(T, T)], ip: T) -> bool {
    // The last range starting at or before `ip` is the only one that can hold it.
    let i = ranges.partition_point(|&(lo, _)| lo <= ip);
    i > 0 && ip <= ranges[i - 1].1
}

mod num_step {
    /// The next integer, if any (a range ending at the top of the space touches nothing after).
    pub trait Succ: Sized {
        fn succ(self) -> Option<Self>;
    }
    impl Succ for u32 {
        fn succ(self) -> Option<u32> {
            self.checked_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Option<u128> {
            self.checked_add(1)
        }
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
mod tests;
