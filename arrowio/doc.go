// Package arrowio reads and writes the file formats strata exchanges with the
// rest of an ML pipeline: the model file (an Arrow IPC file with one row per
// tensor), safetensors checkpoints, and datasets in Arrow IPC, Parquet and CSV.
//
// arrowio knows nothing of numerics beyond conversion between storage types
// (float16, bfloat16 and float64 to float32, integers to float64); it imports
// no other strata package. Tensors of other element types (integer buffers,
// bool masks, 8-bit floats) are raw: their bytes travel from input to output
// unread (Tensor.DType, Tensor.Raw).
//
// # Errors
//
// Every problem with the bytes of an input is reported as a *FormatError that
// names the file, the tensor, column or key at fault, and what was expected.
// It wraps ErrFormat (the input is corrupt or invalid) or ErrUnsupported (the
// input is valid but uses something arrowio does not handle, such as a
// newer format version), so callers can map it to an exit code with errors.Is.
// No byte sequence makes a reader panic: the readers are fuzzed.
//
// # Writes
//
// Every writer goes through WriteFileAtomic: the output appears complete
// under its final name or not at all.
//
// The file formats are described in docs/FORMATS.md at the repository root.
package arrowio
