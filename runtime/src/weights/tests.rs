//! `HostTensor`'s row operations refuse what they cannot do instead of indexing out of bounds.

use super::{HostTensor, TensorData};

fn tensor(shape: &[usize]) -> HostTensor {
    let n = shape.iter().product();
    HostTensor {
        shape: shape.to_vec(),
        data: TensorData::F32((0..n).map(|i| i as f32).collect()),
    }
}

#[test]
fn rows_of_a_scalar_are_an_error() {
    let scalar = tensor(&[]);
    assert!(scalar.rows(0, 0).is_err());
    assert!(scalar.rows(0, 1).is_err());
}

#[test]
fn concatenating_scalars_is_an_error() {
    let scalar = tensor(&[]);
    let err = HostTensor::concat_rows(&[&scalar, &scalar]).unwrap_err();
    assert!(err.to_string().contains("scalars"), "{err}");
}

#[test]
fn rows_and_concat_round_trip() {
    let t = tensor(&[3, 2]);
    let (a, b) = (t.rows(0, 1).unwrap(), t.rows(1, 3).unwrap());
    assert_eq!(a.shape, [1, 2]);
    assert_eq!(b.shape, [2, 2]);
    assert_eq!(HostTensor::concat_rows(&[&a, &b]).unwrap(), t);
    assert!(t.rows(2, 4).is_err());
    assert!(t.rows(2, 1).is_err());
}
