//! The OpenAPI document served at `/openapi.json` and shown by `/docs`.
//!
//! Responses are documented from the types the handlers serialise. The
//! request body of `/predict` depends on the column schema and the
//! configured limits, so its schemas are built when the router is: one
//! property per input column with its range or levels, and the batch limit.

use std::borrow::Cow;

use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::input::InputColumns;
use crate::state::ServeSettings;
use sepsis_ews::schema::DType;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sepsis-ews prediction service",
        description = "Scores hourly ICU data with the production model of the sepsis-ews registry: the calibrated probability of sepsis within 12 hours and the model card's alert decision."
    ),
    paths(
        crate::routes::health,
        crate::routes::ready,
        crate::routes::model,
        crate::routes::predict,
        crate::routes::metrics,
        crate::routes::start_training,
        crate::routes::training_status,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The request body of `/predict`. Its schema is replaced by [`document`]
/// with one built from the column schema.
pub struct PredictRequest;

impl PartialSchema for PredictRequest {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().build().into()
    }
}

impl ToSchema for PredictRequest {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PredictRequest")
    }
}

/// Builds the document for the given input columns and limits.
pub fn document(inputs: &InputColumns, settings: &ServeSettings) -> Document {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    let schemas = &mut components.schemas;
    schemas.insert("Observation".into(), observation(inputs).into());
    schemas.insert("PatientHistory".into(), patient_history(settings).into());
    schemas.insert("RowsRequest".into(), rows_request(settings).into());
    schemas.insert("PatientsRequest".into(), patients_request(settings).into());
    let one_of = OneOfBuilder::new()
        .item(Ref::from_schema_name("RowsRequest"))
        .item(Ref::from_schema_name("PatientsRequest"))
        .description(Some(
            "Either independent hourly rows or patient histories, never both.",
        ))
        .build();
    schemas.insert("PredictRequest".into(), Schema::OneOf(one_of).into());
    doc
}

fn nullable(kind: Type) -> SchemaType {
    SchemaType::Array(vec![kind, Type::Null])
}

/// Builds the schema of one hourly row: a property per input column.
fn observation(inputs: &InputColumns) -> Schema {
    let mut object = ObjectBuilder::new()
        .description(Some(
            "One hour of a patient's values, named as in the column schema. A missing value is null or an absent key.",
        ))
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)));
    for column in inputs.columns() {
        let kind = match column.dtype {
            DType::Float64 => Type::Number,
            DType::Int64 => Type::Integer,
            DType::String => Type::String,
        };
        let mut property = ObjectBuilder::new();
        property = match column.required {
            true => property.schema_type(kind),
            false => property.schema_type(nullable(kind)),
        };
        if let Some([min, max]) = column.range {
            property = property.minimum(Some(min)).maximum(Some(max));
        }
        if let Some(levels) = &column.levels {
            let mut values: Vec<serde_json::Value> = levels
                .iter()
                .map(|level| serde_json::json!(level))
                .collect();
            if !column.required {
                values.push(serde_json::Value::Null);
            }
            property = property.enum_values(Some(values));
        }
        let mut description = column.description.clone().unwrap_or_default();
        if let Some(unit) = column.unit.as_deref().filter(|u| !u.is_empty()) {
            description = format!("{description} ({unit})");
        }
        property = property.description(Some(description));
        object = object.property(&column.name, property);
        if column.required {
            object = object.required(&column.name);
        }
    }
    object.build().into()
}

fn observations(settings: &ServeSettings, description: &str) -> ArrayBuilder {
    ArrayBuilder::new()
        .items(Ref::from_schema_name("Observation"))
        .min_items(Some(1))
        .max_items(Some(settings.max_batch))
        .description(Some(description))
}

fn patient_history(settings: &ServeSettings) -> Schema {
    ObjectBuilder::new()
        .property(
            "patient_id",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(256))
                .description(Some("Unique within the request")),
        )
        .required("patient_id")
        .property(
            "observations",
            observations(
                settings,
                "The patient's hours in order of strictly increasing ICULOS",
            ),
        )
        .required("observations")
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .build()
        .into()
}

/// An optional flag; `null` is the same as leaving it out.
fn flag(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Boolean))
        .description(Some(description))
}

fn top_k() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(nullable(Type::Integer))
        .minimum(Some(1))
        .description(Some(
            "Contributions per result with explain [default: serve.top_k]",
        ))
}

const EXPLAIN: &str = "Add the largest feature contributions (TreeSHAP) to each result";

fn rows_request(settings: &ServeSettings) -> Schema {
    ObjectBuilder::new()
        .property(
            "rows",
            observations(
                settings,
                "Independent hourly rows, each scored as a stay of one hour",
            ),
        )
        .required("rows")
        .property("explain", flag(EXPLAIN))
        .property("top_k", top_k())
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .build()
        .into()
}

fn patients_request(settings: &ServeSettings) -> Schema {
    ObjectBuilder::new()
        .property(
            "patients",
            ArrayBuilder::new()
                .items(Ref::from_schema_name("PatientHistory"))
                .min_items(Some(1))
                .max_items(Some(settings.max_batch))
                .description(Some(
                    "Patient histories; all their observations together count against serve.max_batch",
                )),
        )
        .required("patients")
        .property(
            "all_hours",
            flag("Return every hour of each history instead of only the last"),
        )
        .property("explain", flag(EXPLAIN))
        .property("top_k", top_k())
        .additional_properties(Some(AdditionalProperties::<Schema>::FreeForm(false)))
        .build()
        .into()
}
