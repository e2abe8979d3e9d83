//! `date_trunc` with a fast path for the lake's timestamps.
//!
//! Every time column of the lake is `Timestamp(µs, "UTC")`. DataFusion 55 truncates a timestamp
//! with a time zone through chrono-tz one value at a time (time-zone lookups and string
//! formatting per row) unless the zone is absent: `date_trunc('hour', stage_at)` over a million
//! events took 70 ms of a 160 ms "events per user per hour" query. In UTC every hour and day has
//! the same length, so truncation to microsecond … day is integer arithmetic. Anything else
//! (weeks, months, other zones, other units) goes to DataFusion's own function, which this one
//! also copies its name, signature, return type and ordering behaviour from.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, FieldRef, TimeUnit, TimestampMicrosecondType};
use datafusion::common::Result;
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

#[derive(Debug, PartialEq, Eq, Hash)]
pub(crate) struct UtcDateTrunc {
    builtin: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    pub(crate) fn new() -> Self {
        UtcDateTrunc {
            builtin: datafusion::functions::datetime::date_trunc(),
        }
    }
}

/// Microseconds in one `granularity`, for the units that have a fixed length in UTC.
fn fixed_unit_micros(granularity: &str) -> Option<i64> {
    match granularity.to_ascii_lowercase().as_str() {
        "microsecond" => Some(1),
        "millisecond" => Some(1_000),
        "second" => Some(1_000_000),
        "minute" => Some(60_000_000),
        "hour" => Some(3_600_000_000),
        "day" => Some(86_400_000_000),
        _ => None,
    }
}

fn is_utc(zone: &str) -> bool {
    matches!(zone, "UTC" | "utc" | "Z" | "+00:00" | "Etc/UTC")
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.builtin.name()
    }

    fn signature(&self) -> &Signature {
        self.builtin.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.builtin.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.builtin.return_field_from_args(args)
    }

    fn aliases(&self) -> &[String] {
        self.builtin.aliases()
    }

    fn output_ordering(&self, input: &[ExprProperties]) -> Result<SortProperties> {
        self.builtin.output_ordering(input)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.builtin.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [
            ColumnarValue::Scalar(granularity),
            ColumnarValue::Array(times),
        ] = args.args.as_slice()
            && let Some(Some(granularity)) = granularity.try_as_str()
            && let Some(unit) = fixed_unit_micros(granularity)
            && let DataType::Timestamp(TimeUnit::Microsecond, Some(zone)) = times.data_type()
            && is_utc(zone)
        {
            let truncated = times
                .as_primitive::<TimestampMicrosecondType>()
                .unary::<_, TimestampMicrosecondType>(|t| t - t.rem_euclid(unit))
                .with_timezone(Arc::clone(zone));
            return Ok(ColumnarValue::Array(Arc::new(truncated)));
        }
        self.builtin.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::prelude::SessionContext;

    use super::*;

    /// The fast path and DataFusion's own function agree, before 1970 and across a DST change
    /// of other zones (none in UTC), for every fixed unit; the rest is DataFusion's.
    #[tokio::test]
    async fn agrees_with_datafusion_on_every_unit() {
        let micros = [
            -86_400_000_001,       // 1969-12-30T23:59:59.999999
            0,                     // the epoch
            1_711_846_799_999_999, // 2024-03-30T23:59:59.999999
            1_763_788_215_123_456, // 2025-11-22T05:10:15.123456
            1_798_761_599_999_999, // 2026-12-31T23:59:59.999999
        ];
        let times: ArrayRef = Arc::new(
            TimestampMicrosecondArray::from(
                micros
                    .iter()
                    .map(|&m| Some(m))
                    .chain([None])
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        );
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![Field::new(
            "t",
            times.data_type().clone(),
            true,
        )]));
        let batch = RecordBatch::try_new(schema, vec![times]).unwrap();
        let builtin = SessionContext::new();
        builtin.register_batch("e", batch.clone()).unwrap();
        let ours = SessionContext::new();
        ours.register_udf(ScalarUDF::new_from_impl(UtcDateTrunc::new()));
        ours.register_batch("e", batch).unwrap();
        for unit in [
            "microsecond",
            "millisecond",
            "second",
            "minute",
            "hour",
            "DAY",
            "week",
            "month",
            "year",
        ] {
            let sql = format!(
                "SELECT date_trunc('{unit}', t) AS x, arrow_typeof(date_trunc('{unit}', t)) AS ty FROM e"
            );
            let a = builtin.sql(&sql).await.unwrap().collect().await.unwrap();
            let b = ours.sql(&sql).await.unwrap().collect().await.unwrap();
            assert_eq!(a, b, "{unit}");
        }
        let b = ours
            .sql("SELECT CAST(date_trunc('hour', t) AS VARCHAR) FROM e")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = datafusion::arrow::util::pretty::pretty_format_batches(&b)
            .unwrap()
            .to_string();
        assert!(text.contains("1969-12-30T23:00:00Z"), "{text}");
        assert!(text.contains("2025-11-22T05:00:00Z"), "{text}");
    }
}
