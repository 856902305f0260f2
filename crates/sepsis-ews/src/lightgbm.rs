//! LightGBM training through its C API (`lightgbm3-sys`).
//!
//! `lightgbm3`'s dataset constructors pass an empty parameter string to
//! `LGBM_DatasetCreateFromMat`, so dataset parameters such as `max_bin` and the
//! seed of the binning sample silently kept LightGBM's defaults: a model
//! trained with `max_bin=15` came out identical to one with 255. Here the
//! dataset and the booster get the same parameters, as Python's
//! `lightgbm.train` does. Every handle is freed by a guard, also on error.

use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int, c_void};

use lightgbm3_sys as sys;

#[derive(Debug, thiserror::Error)]
#[error("LightGBM {call} failed: {message}")]
pub struct LightGbmError {
    call: &'static str,
    message: String,
}

fn check(call: &'static str, status: c_int) -> Result<(), LightGbmError> {
    if status == 0 {
        return Ok(());
    }
    // SAFETY: LGBM_GetLastError returns a pointer to a NUL-terminated,
    // thread-local message owned by LightGBM.
    let message = unsafe { CStr::from_ptr(sys::LGBM_GetLastError()) }
        .to_string_lossy()
        .into_owned();
    Err(LightGbmError { call, message })
}

struct DatasetGuard(sys::DatasetHandle);

impl Drop for DatasetGuard {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_DatasetCreateFromMat and is freed once.
        unsafe {
            sys::LGBM_DatasetFree(self.0);
        }
    }
}

struct BoosterGuard(sys::BoosterHandle);

impl Drop for BoosterGuard {
    fn drop(&mut self) {
        // SAFETY: the handle came from LGBM_BoosterCreate and is freed once.
        unsafe {
            sys::LGBM_BoosterFree(self.0);
        }
    }
}

/// The training data for [`train`]: a row-major float32 matrix with labels.
/// [`train`] takes it by value and frees the matrix once LightGBM has binned
/// it into its own dataset, before boosting starts.
pub struct TrainingSet<'a> {
    pub values: Vec<f32>,
    pub labels: Vec<f32>,
    pub weights: Option<Vec<f32>>,
    pub width: usize,
    pub feature_names: &'a [String],
}

/// Formats JSON parameters as LightGBM's `key=value key=value` string.
pub fn parameter_string(params: &serde_json::Value) -> String {
    let Some(object) = params.as_object() else {
        return String::new();
    };
    object
        .iter()
        .map(|(key, value)| match value {
            serde_json::Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Trains `iterations` boosting rounds and returns the model in LightGBM's
/// text format.
pub fn train(
    data: TrainingSet<'_>,
    params: &serde_json::Value,
    iterations: u32,
) -> Result<String, LightGbmError> {
    let rows = data.labels.len();
    let invalid = |message: String| LightGbmError {
        call: "input check",
        message,
    };
    if data.width == 0 || data.values.len() != rows * data.width {
        return Err(invalid(format!(
            "{} values do not form {rows} rows of {} features",
            data.values.len(),
            data.width
        )));
    }
    if data.feature_names.len() != data.width {
        return Err(invalid("one feature name per column is required".into()));
    }
    let rows_i32 = i32::try_from(rows).map_err(|_| invalid(format!("{rows} rows is too many")))?;
    let parameters =
        CString::new(parameter_string(params)).map_err(|_| invalid("NUL in parameters".into()))?;

    let mut dataset = std::ptr::null_mut();
    // SAFETY: `values` contains rows × width float32 values in row-major order,
    // as the dtype and layout arguments state; LightGBM copies what it needs.
    check("LGBM_DatasetCreateFromMat", unsafe {
        sys::LGBM_DatasetCreateFromMat(
            data.values.as_ptr() as *const c_void,
            sys::C_API_DTYPE_FLOAT32 as c_int,
            rows_i32,
            data.width as i32,
            1,
            parameters.as_ptr(),
            std::ptr::null_mut(),
            &mut dataset,
        )
    })?;
    let dataset = DatasetGuard(dataset);

    set_field(&dataset, "label", &data.labels)?;
    if let Some(weights) = &data.weights {
        set_field(&dataset, "weight", weights)?;
    }
    let names: Vec<CString> = data
        .feature_names
        .iter()
        .map(|n| CString::new(n.as_str()).map_err(|_| invalid(format!("NUL in {n:?}"))))
        .collect::<Result<_, _>>()?;
    let mut name_pointers: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
    // SAFETY: one valid C string per column, alive for the call.
    check("LGBM_DatasetSetFeatureNames", unsafe {
        sys::LGBM_DatasetSetFeatureNames(
            dataset.0,
            name_pointers.as_mut_ptr(),
            name_pointers.len() as c_int,
        )
    })?;
    drop(data.values);
    drop(data.labels);
    drop(data.weights);

    let mut booster = std::ptr::null_mut();
    // SAFETY: the dataset handle is valid and outlives the booster guard.
    check("LGBM_BoosterCreate", unsafe {
        sys::LGBM_BoosterCreate(dataset.0, parameters.as_ptr(), &mut booster)
    })?;
    let booster = BoosterGuard(booster);
    for _ in 0..iterations {
        let mut finished: c_int = 0;
        // SAFETY: the booster handle is valid.
        check("LGBM_BoosterUpdateOneIter", unsafe {
            sys::LGBM_BoosterUpdateOneIter(booster.0, &mut finished)
        })?;
        if finished != 0 {
            break;
        }
    }
    save_model(&booster)
}

fn set_field(dataset: &DatasetGuard, name: &str, values: &[f32]) -> Result<(), LightGbmError> {
    let field = CString::new(name).expect("field names have no NUL");
    // SAFETY: `values` has one float32 per row, as the count and dtype state.
    check("LGBM_DatasetSetField", unsafe {
        sys::LGBM_DatasetSetField(
            dataset.0,
            field.as_ptr(),
            values.as_ptr() as *const c_void,
            values.len() as c_int,
            sys::C_API_DTYPE_FLOAT32 as c_int,
        )
    })
}

fn save_model(booster: &BoosterGuard) -> Result<String, LightGbmError> {
    let importance = sys::C_API_FEATURE_IMPORTANCE_SPLIT as c_int;
    let mut length: i64 = 0;
    // SAFETY: with a zero-length buffer LightGBM only reports the required length.
    check("LGBM_BoosterSaveModelToString", unsafe {
        sys::LGBM_BoosterSaveModelToString(
            booster.0,
            0,
            -1,
            importance,
            0,
            &mut length,
            std::ptr::null_mut(),
        )
    })?;
    let mut buffer = vec![0u8; length.max(1) as usize];
    // SAFETY: the buffer has the length LightGBM asked for.
    check("LGBM_BoosterSaveModelToString", unsafe {
        sys::LGBM_BoosterSaveModelToString(
            booster.0,
            0,
            -1,
            importance,
            buffer.len() as i64,
            &mut length,
            buffer.as_mut_ptr() as *mut c_char,
        )
    })?;
    let text = CStr::from_bytes_until_nul(&buffer)
        .map_err(|_| LightGbmError {
            call: "LGBM_BoosterSaveModelToString",
            message: "the model text is not NUL-terminated".into(),
        })?
        .to_string_lossy()
        .into_owned();
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_format_as_key_value_pairs() {
        let params =
            serde_json::json!({"objective": "binary", "max_bin": 15, "deterministic": true});
        let text = parameter_string(&params);
        assert!(text.contains("objective=binary"));
        assert!(text.contains("max_bin=15"));
        assert!(text.contains("deterministic=true"));
    }

    /// Collects the distinct split thresholds of a text model.
    fn thresholds(model: &str) -> std::collections::BTreeSet<String> {
        model
            .lines()
            .filter_map(|l| l.strip_prefix("threshold="))
            .flat_map(|l| l.split(' ').map(str::to_string))
            .collect()
    }

    fn train_with_max_bin(max_bin: u32) -> String {
        let names = vec!["x".to_string()];
        let values: Vec<f32> = (0..2000).map(|i| (i % 1000) as f32).collect();
        let labels: Vec<f32> = values.iter().map(|v| f32::from(*v >= 500.0)).collect();
        let data = TrainingSet {
            values,
            labels,
            weights: None,
            width: 1,
            feature_names: &names,
        };
        let params = serde_json::json!({
            "objective": "binary", "max_bin": max_bin, "num_leaves": 8,
            "min_data_in_leaf": 5, "verbosity": -1, "deterministic": true,
            "force_row_wise": true, "seed": 1
        });
        train(data, &params, 20).unwrap()
    }

    #[test]
    fn dataset_parameters_reach_binning() {
        // With 4 bins a feature has at most 3 cut points; with 255 it has many.
        let coarse = thresholds(&train_with_max_bin(4));
        let fine = thresholds(&train_with_max_bin(255));
        assert!(coarse.len() <= 3, "{coarse:?}");
        assert!(fine.len() > 3, "{fine:?}");
    }

    #[test]
    fn mismatched_matrix_is_rejected() {
        let names = vec!["a".to_string()];
        let data = TrainingSet {
            values: vec![1.0, 2.0, 3.0],
            labels: vec![0.0, 1.0],
            weights: None,
            width: 1,
            feature_names: &names,
        };
        let error = train(data, &serde_json::json!({}), 1).unwrap_err();
        assert!(error.to_string().contains("do not form"), "{error}");
    }
}
