package arrowio

import (
	"bytes"
	"fmt"
	"runtime/debug"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/ipc"
)

// MappedModel is a model whose tensor values are not copied: each
// Tensor.Data is a float32 view of the memory-mapped model file. It is what
// MapModel returns, for callers that only read the values (inspect, export,
// forward passes); callers that change tensors use ReadModel, whose Model
// owns its memory.
//
// The contract:
//
//   - Do not write to any Tensor.Data. On Linux and macOS the mapping is
//     write-protected once MapModel has validated it, so a write crashes
//     the program with a fault; elsewhere it changes a private copy of the
//     page, never the file.
//   - Do not use a Tensor.Data, or any slice of one, after Close: the
//     memory is unmapped and an access crashes the program. Close sets
//     every Tensor.Data of the MappedModel to nil, but it cannot reach
//     copies of the slice headers held elsewhere.
//   - Call Close when done. There is no finalizer: the garbage collector
//     cannot see which slices still point into the mapping, so it never
//     unmaps it.
//   - The file must not be truncated or rewritten in place while mapped
//     (reading a page past a new end of file faults). Replacing it by
//     rename, as WriteModel does, is safe: the mapping keeps the old file.
//
// Model (embedded) holds the architecture, tensors and metadata with the
// same meaning and validation as ReadModel's; &mm.Model can be passed to
// anything that reads a *Model. Names, roles, shapes and metadata are
// ordinary Go memory and remain valid after Close.
type MappedModel struct {
	Model
	fm *fileMap // nil after Close
}

// MapModel reads and validates a model file like ReadModel, but without
// copying the tensors' values: they alias a read-only memory mapping of the
// file, which the returned MappedModel keeps until Close (see MappedModel
// for the contract). Validation is ReadModel's, in full (IPC structure and
// bounds, shapes, null and finite values), run over the mapping in place,
// and every invalid file gives the same *FormatError as ReadModel.
//
// A tensor's values are still copied, into Go memory the model owns, when
// they are not a 4-byte aligned range of the file: from a compressed record
// batch (decompressed by arrow-go) or at an unaligned buffer offset (which
// conforming writers, aligning buffers to 8 bytes, never produce).
//
// Options are ReadModel's. With WithMmap(false), or where the file cannot
// be mapped, or for a pipe, the file is read into one Go buffer and the
// tensors alias that buffer instead (one copy, held until Close).
func MapModel(path string, opts ...Option) (_ *MappedModel, err error) {
	cfg := newConfig(opts)
	f, size, data, err := openInput(path)
	if err != nil {
		return nil, err
	}
	fm := &fileMap{data: data} // a pipe, read whole
	if f != nil {
		defer f.Close() // the mapping outlives the file descriptor
		if cfg.mmap {
			if fm, err = openMap(f, size); err != nil {
				return nil, fmt.Errorf("arrowio: map %s: %w", path, err)
			}
		} else {
			b, _, err := readAll(f, size)
			if err != nil {
				return nil, fmt.Errorf("arrowio: read %s: %w", path, err)
			}
			fm = &fileMap{data: b}
		}
	}
	defer func() {
		if err != nil {
			_ = fm.close()
		}
	}()
	m, err := decodeMapped(path, fm.data, cfg)
	if err != nil {
		return nil, err
	}
	if err := fm.readOnly(); err != nil {
		return nil, fmt.Errorf("arrowio: write-protect the mapping of %s: %w", path, err)
	}
	return &MappedModel{Model: *m, fm: fm}, nil
}

// decodeMapped decodes the model file held in data, with tensor values
// aliasing data where possible. A fault on a mapping (the file truncated
// under us) becomes a panic that decodeModel recovers, not a crash.
func decodeMapped(name string, data []byte, cfg *config) (*Model, error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	alias := data
	if alias == nil {
		alias = []byte{} // an empty file: nothing to alias, but not the copying mode
	}
	return decodeModel(name, bytes.NewReader(data), int64(len(data)), cfg, alias, func(o ...ipc.Option) (*ipc.FileReader, error) {
		return ipc.NewMappedFileReader(data, o...)
	})
}

// Close unmaps the file and sets every Tensor.Data to nil. No slice of the
// values may be used afterwards. Close is idempotent; it returns an error
// only if unmapping fails.
func (mm *MappedModel) Close() error {
	if mm.fm == nil {
		return nil
	}
	for i := range mm.Tensors {
		mm.Tensors[i].Data = nil
	}
	err := mm.fm.close()
	mm.fm = nil
	if err != nil {
		return fmt.Errorf("arrowio: unmap model: %w", err)
	}
	return nil
}

// aliasValues returns v itself, its capacity cut to its length so that an
// append reallocates instead of writing past it, if v lies within mem and is
// 4-byte aligned; otherwise a copy of v in Go memory (arrow-go decompressed
// it into a buffer it frees, or the file placed it at an unaligned offset).
// An empty v gives nil, as clone does.
func aliasValues(v []float32, mem []byte) []float32 {
	if len(v) == 0 {
		return nil
	}
	if within(v, mem) && uintptr(unsafe.Pointer(unsafe.SliceData(v)))%unsafe.Alignof(v[0]) == 0 {
		return v[:len(v):len(v)]
	}
	return clone(v)
}

// within reports whether the bytes of v lie inside mem.
func within(v []float32, mem []byte) bool {
	if len(mem) == 0 || len(v) == 0 {
		return false
	}
	p := uintptr(unsafe.Pointer(unsafe.SliceData(v)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(mem)))
	n := uintptr(len(v)) * unsafe.Sizeof(v[0])
	return p >= lo && p-lo <= uintptr(len(mem)) && n <= uintptr(len(mem))-(p-lo)
}
