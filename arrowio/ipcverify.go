package arrowio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// arrow-go v18.8.0 does not verify the flatbuffers of an IPC file before it
// uses them: a corrupt vector length becomes a make() of up to 2^32
// elements, a shared child table becomes an exponential walk, and a corrupt
// compressed-buffer prefix becomes an allocation of up to 2^63 bytes. All of
// these kill the process (out of memory) rather than panic, so recovering
// is not enough. verifyIPCFile and verifyIPCStream check, before arrow-go
// sees the bytes, every flatbuffer offset and vector arrow-go follows, the
// depth and size of the schema tree, and the declared sizes of compressed
// buffers. They check structure only; arrow-go and the readers check
// meaning.

// Flatbuffer table slots of the Arrow IPC schema (format/Schema.fbs,
// Message.fbs, File.fbs).
const (
	slotFooterSchema        = 1
	slotFooterDictionaries  = 2
	slotFooterRecordBatches = 3
	slotFooterMetadata      = 4

	slotSchemaFields   = 1
	slotSchemaMetadata = 2
	slotSchemaFeatures = 3

	slotFieldName       = 0
	slotFieldTypeType   = 2
	slotFieldType       = 3
	slotFieldDictionary = 4
	slotFieldChildren   = 5
	slotFieldMetadata   = 6

	slotDictEncIndexType = 1
	slotUnionTypeIDs     = 1

	slotMessageHeaderType = 1
	slotMessageHeader     = 2
	slotMessageBodyLength = 3
	slotMessageMetadata   = 4

	slotBatchNodes     = 1
	slotBatchBuffers   = 2
	slotBatchCompress  = 3
	slotBatchVariadics = 4

	slotDictBatchData = 1

	typeUnion = 14 // Type.Union

	headerSchema     = 1
	headerDictionary = 2
	headerRecord     = 3

	maxSchemaDepth = 64
)

var errFlatbuffer = errors.New("corrupt IPC metadata")

// fbuf is a bounds-checked reader over one flatbuffer.
type fbuf struct {
	b      []byte
	visits int // Field tables visited, counting shared ones each time
}

func (f *fbuf) u16(pos int) (int, bool) {
	if pos < 0 || pos > len(f.b)-2 {
		return 0, false
	}
	return int(binary.LittleEndian.Uint16(f.b[pos:])), true
}

func (f *fbuf) u32(pos int) (uint32, bool) {
	if pos < 0 || pos > len(f.b)-4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(f.b[pos:]), true
}

// fbTable is a verified table: its vtable lies within the buffer.
type fbTable struct {
	f      *fbuf
	pos    int // table start
	vt     int // vtable start
	vtSize int
}

// table verifies the table at pos.
func (f *fbuf) table(pos int) (fbTable, error) {
	so, ok := f.u32(pos)
	if !ok {
		return fbTable{}, errFlatbuffer
	}
	vt := int64(pos) - int64(int32(so))
	if vt < 0 || vt > int64(len(f.b)-4) {
		return fbTable{}, errFlatbuffer
	}
	size, _ := f.u16(int(vt))
	tsize, _ := f.u16(int(vt) + 2)
	if size < 4 || size%2 != 0 || int(vt)+size > len(f.b) || pos+tsize > len(f.b) {
		return fbTable{}, errFlatbuffer
	}
	return fbTable{f: f, pos: pos, vt: int(vt), vtSize: size}, nil
}

// root verifies the root table of the buffer.
func (f *fbuf) root() (fbTable, error) {
	off, ok := f.u32(0)
	if !ok {
		return fbTable{}, errFlatbuffer
	}
	if int64(off) >= int64(len(f.b)) {
		return fbTable{}, errFlatbuffer
	}
	return f.table(int(off))
}

// field returns the position of slot's value and whether it is present,
// checking that size bytes of it lie within the buffer.
func (t fbTable) field(slot, size int) (int, bool, error) {
	vo := 4 + 2*slot
	if vo+2 > t.vtSize {
		return 0, false, nil
	}
	off, _ := t.f.u16(t.vt + vo)
	if off == 0 {
		return 0, false, nil
	}
	pos := t.pos + off
	if pos+size > len(t.f.b) {
		return 0, false, errFlatbuffer
	}
	return pos, true, nil
}

func (t fbTable) u8(slot int) (int, error) {
	pos, ok, err := t.field(slot, 1)
	if !ok || err != nil {
		return 0, err
	}
	return int(t.f.b[pos]), nil
}

func (t fbTable) i64(slot int) (int64, error) {
	pos, ok, err := t.field(slot, 8)
	if !ok || err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(t.f.b[pos:])), nil
}

// ref follows the offset in slot and returns the target position.
func (t fbTable) ref(slot int) (int, bool, error) {
	pos, ok, err := t.field(slot, 4)
	if !ok || err != nil {
		return 0, false, err
	}
	off, _ := t.f.u32(pos)
	target := int64(pos) + int64(off)
	if target >= int64(len(t.f.b)) {
		return 0, false, errFlatbuffer
	}
	return int(target), true, nil
}

func (t fbTable) sub(slot int) (fbTable, bool, error) {
	pos, ok, err := t.ref(slot)
	if !ok || err != nil {
		return fbTable{}, false, err
	}
	st, err := t.f.table(pos)
	return st, err == nil, err
}

// vector verifies the vector in slot, of n elements of elem bytes each, and
// returns the position of its first element.
func (t fbTable) vector(slot, elem int) (start, n int, err error) {
	pos, ok, err := t.ref(slot)
	if !ok || err != nil {
		return 0, 0, err
	}
	l, ok := t.f.u32(pos)
	if !ok {
		return 0, 0, errFlatbuffer
	}
	if int64(l)*int64(elem) > int64(len(t.f.b)-pos-4) {
		return 0, 0, errFlatbuffer
	}
	return pos + 4, int(l), nil
}

// tables verifies a vector of tables and calls visit for each.
func (t fbTable) tables(slot int, visit func(fbTable) error) error {
	start, n, err := t.vector(slot, 4)
	if err != nil {
		return err
	}
	for i := range n {
		p := start + 4*i
		off, _ := t.f.u32(p)
		target := int64(p) + int64(off)
		if target >= int64(len(t.f.b)) {
			return errFlatbuffer
		}
		st, err := t.f.table(int(target))
		if err != nil {
			return err
		}
		if err := visit(st); err != nil {
			return err
		}
	}
	return nil
}

func (t fbTable) str(slot int) error {
	_, _, err := t.vector(slot, 1)
	return err
}

func verifyKeyValues(t fbTable, slot int) error {
	return t.tables(slot, func(kv fbTable) error {
		if err := kv.str(0); err != nil {
			return err
		}
		return kv.str(1)
	})
}

func verifySchemaFB(s fbTable) error {
	if err := s.tables(slotSchemaFields, func(f fbTable) error { return verifyFieldFB(f, 1) }); err != nil {
		return err
	}
	if err := verifyKeyValues(s, slotSchemaMetadata); err != nil {
		return err
	}
	_, _, err := s.vector(slotSchemaFeatures, 8)
	return err
}

func verifyFieldFB(f fbTable, depth int) error {
	if depth > maxSchemaDepth {
		return fmt.Errorf("%w: schema nested deeper than %d", errFlatbuffer, maxSchemaDepth)
	}
	// A real schema has a distinct table, of at least 4 bytes, per field.
	f.f.visits++
	if f.f.visits > len(f.f.b)/4+1 {
		return fmt.Errorf("%w: schema has more fields than its bytes can hold", errFlatbuffer)
	}
	if err := f.str(slotFieldName); err != nil {
		return err
	}
	tt, err := f.u8(slotFieldTypeType)
	if err != nil {
		return err
	}
	typ, ok, err := f.sub(slotFieldType)
	if err != nil {
		return err
	}
	if ok && tt == typeUnion {
		if _, _, err := typ.vector(slotUnionTypeIDs, 4); err != nil {
			return err
		}
	}
	dict, ok, err := f.sub(slotFieldDictionary)
	if err != nil {
		return err
	}
	if ok {
		if _, _, err := dict.sub(slotDictEncIndexType); err != nil {
			return err
		}
	}
	if err := f.tables(slotFieldChildren, func(c fbTable) error { return verifyFieldFB(c, depth+1) }); err != nil {
		return err
	}
	return verifyKeyValues(f, slotFieldMetadata)
}

// ipcBuffer is one body buffer of a record batch.
type ipcBuffer struct{ offset, length int64 }

// verifyBatchFB checks a RecordBatch table and returns its body buffers and
// whether they are compressed.
func verifyBatchFB(b fbTable) ([]ipcBuffer, bool, error) {
	if _, _, err := b.vector(slotBatchNodes, 16); err != nil {
		return nil, false, err
	}
	start, n, err := b.vector(slotBatchBuffers, 16)
	if err != nil {
		return nil, false, err
	}
	_, compressed, err := b.sub(slotBatchCompress)
	if err != nil {
		return nil, false, err
	}
	if _, _, err := b.vector(slotBatchVariadics, 8); err != nil {
		return nil, false, err
	}
	bufs := make([]ipcBuffer, n)
	for i := range bufs {
		p := start + 16*i
		bufs[i] = ipcBuffer{
			offset: int64(binary.LittleEndian.Uint64(b.f.b[p:])),
			length: int64(binary.LittleEndian.Uint64(b.f.b[p+8:])),
		}
	}
	return bufs, compressed, nil
}

// ipcMessage is what verifyMessageFB learns about one message.
type ipcMessage struct {
	header     int
	bodyLength int64
	buffers    []ipcBuffer // of a record or dictionary batch
	compressed bool
}

func verifyMessageFB(meta []byte) (ipcMessage, error) {
	f := &fbuf{b: meta}
	var m ipcMessage
	root, err := f.root()
	if err != nil {
		return m, err
	}
	if m.header, err = root.u8(slotMessageHeaderType); err != nil {
		return m, err
	}
	if m.bodyLength, err = root.i64(slotMessageBodyLength); err != nil {
		return m, err
	}
	if err := verifyKeyValues(root, slotMessageMetadata); err != nil {
		return m, err
	}
	h, ok, err := root.sub(slotMessageHeader)
	if err != nil || !ok {
		return m, err
	}
	switch m.header {
	case headerSchema:
		err = verifySchemaFB(h)
	case headerRecord:
		m.buffers, m.compressed, err = verifyBatchFB(h)
	case headerDictionary:
		data, ok, derr := h.sub(slotDictBatchData)
		if derr != nil || !ok {
			return m, derr
		}
		m.buffers, m.compressed, err = verifyBatchFB(data)
	}
	if err != nil {
		return m, err
	}
	// arrow-go slices each buffer out of the body it read: one that
	// claims more than the body (a corrupt 2 GiB length) would panic
	// there with a message that says nothing of the file.
	for i, b := range m.buffers {
		if b.offset < 0 || b.length < 0 || b.offset > m.bodyLength || b.length > m.bodyLength-b.offset {
			return m, fmt.Errorf("%w: buffer %d [%d, +%d) lies outside the message body of %d bytes", errFlatbuffer, i, b.offset, b.length, m.bodyLength)
		}
	}
	return m, nil
}

// maxDecompressed bounds the total uncompressed size the buffers of one
// compressed batch may declare: 1 GiB, or 1024 times the compressed body
// for larger bodies. Real data stays far below; a corrupt prefix does not.
func maxDecompressed(body int64) int64 {
	if body > (1<<62)/1024 {
		return math.MaxInt64
	}
	return max(1<<30, 1024*body)
}

// verifyBody checks the declared uncompressed sizes of a compressed batch
// whose body starts at bodyStart.
func verifyBody(r io.ReaderAt, size, bodyStart int64, m ipcMessage) error {
	if !m.compressed {
		return nil
	}
	var total int64
	var prefix [8]byte
	for _, b := range m.buffers {
		if b.length < 8 {
			continue // empty, or too short: arrow-go reports it
		}
		at := bodyStart + b.offset
		if b.offset < 0 || b.offset > m.bodyLength-8 || at < 0 || at > size-8 {
			return fmt.Errorf("%w: buffer outside the message body", errFlatbuffer)
		}
		if _, err := r.ReadAt(prefix[:], at); err != nil {
			return fmt.Errorf("%w: %w", errFlatbuffer, err)
		}
		n := int64(binary.LittleEndian.Uint64(prefix[:]))
		if n == -1 {
			continue // stored uncompressed
		}
		if n < 0 || n > maxDecompressed(m.bodyLength)-total {
			return fmt.Errorf("%w: compressed buffers declare more than %d bytes", errFlatbuffer, maxDecompressed(m.bodyLength))
		}
		total += n
	}
	return nil
}

// readMessageMeta reads the metadata of the message at pos, given its
// length including the prefix (metaLen, from a file footer) or, for a
// stream (metaLen < 0), from the prefix itself. It returns the flatbuffer
// bytes, the position after the metadata, and eos for an end-of-stream
// marker.
func readMessageMeta(r io.ReaderAt, size, pos int64, metaLen int64) (meta []byte, next int64, eos bool, err error) {
	var p [8]byte
	if pos < 0 || pos > size-4 {
		if metaLen < 0 && pos == size {
			return nil, pos, true, nil // stream without an end marker
		}
		return nil, 0, false, fmt.Errorf("%w: message offset %d outside the file", errFlatbuffer, pos)
	}
	if _, err := r.ReadAt(p[:4], pos); err != nil {
		return nil, 0, false, fmt.Errorf("%w: %w", errFlatbuffer, err)
	}
	prefix := int64(4)
	length := int64(binary.LittleEndian.Uint32(p[:4]))
	if length == 0xFFFFFFFF {
		if pos > size-8 {
			return nil, 0, false, fmt.Errorf("%w: truncated message prefix", errFlatbuffer)
		}
		if _, err := r.ReadAt(p[4:8], pos+4); err != nil {
			return nil, 0, false, fmt.Errorf("%w: %w", errFlatbuffer, err)
		}
		prefix = 8
		length = int64(binary.LittleEndian.Uint32(p[4:8]))
	}
	if length == 0 {
		return nil, pos + prefix, true, nil
	}
	if metaLen >= 0 && metaLen != prefix+length {
		return nil, 0, false, fmt.Errorf("%w: message length %d does not match its block", errFlatbuffer, length)
	}
	if length > size-pos-prefix {
		return nil, 0, false, fmt.Errorf("%w: message length %d past the end of the file", errFlatbuffer, length)
	}
	meta = make([]byte, length)
	if _, err := r.ReadAt(meta, pos+prefix); err != nil {
		return nil, 0, false, fmt.Errorf("%w: %w", errFlatbuffer, err)
	}
	return meta, pos + prefix + length, false, nil
}

// verifyIPCFile checks an IPC file of size bytes: its footer, schema and
// every message the footer points to. A file without the trailing magic is
// left for arrow-go to reject.
func verifyIPCFile(r io.ReaderAt, size int64) error {
	const tail = 10 // int32 footer length + "ARROW1"
	if size < int64(len(arrowMagic))*2+4 {
		return nil
	}
	var t [tail]byte
	if _, err := r.ReadAt(t[:], size-tail); err != nil {
		return fmt.Errorf("%w: %w", errFlatbuffer, err)
	}
	if string(t[4:]) != string(arrowMagic) {
		return nil
	}
	flen := int64(binary.LittleEndian.Uint32(t[:4]))
	if flen <= 0 || flen > size-tail {
		return nil // arrow-go reports the inconsistent footer
	}
	footer := make([]byte, flen)
	if _, err := r.ReadAt(footer, size-tail-flen); err != nil {
		return fmt.Errorf("%w: %w", errFlatbuffer, err)
	}
	f := &fbuf{b: footer}
	root, err := f.root()
	if err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	if s, ok, err := root.sub(slotFooterSchema); err != nil {
		return fmt.Errorf("footer: %w", err)
	} else if ok {
		if err := verifySchemaFB(s); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	if err := verifyKeyValues(root, slotFooterMetadata); err != nil {
		return fmt.Errorf("footer: %w", err)
	}
	for _, slot := range []int{slotFooterDictionaries, slotFooterRecordBatches} {
		start, n, err := root.vector(slot, 24)
		if err != nil {
			return fmt.Errorf("footer: %w", err)
		}
		for i := range n {
			p := start + 24*i
			offset := int64(binary.LittleEndian.Uint64(footer[p:]))
			metaLen := int64(int32(binary.LittleEndian.Uint32(footer[p+8:])))
			if metaLen < 4 {
				continue // arrow-go rejects the block
			}
			meta, next, eos, err := readMessageMeta(r, size, offset, metaLen)
			if err != nil || eos {
				continue // arrow-go rejects the block with its own message
			}
			m, err := verifyMessageFB(meta)
			if err != nil {
				return fmt.Errorf("message at offset %d: %w", offset, err)
			}
			if err := verifyBody(r, size, next, m); err != nil {
				return fmt.Errorf("message at offset %d: %w", offset, err)
			}
		}
	}
	return nil
}

// verifyIPCStream checks every message of an IPC stream of size bytes.
// With ended, the stream must end with the end-of-stream marker every
// writer writes when it closes: a stream cut at a message boundary reads
// as a valid shorter stream otherwise, and the rows after the cut would
// be lost without a word. (The serialised schema Parquet stores has no
// marker.)
func verifyIPCStream(r io.ReaderAt, size int64, ended bool) error {
	pos := int64(0)
	for {
		meta, next, eos, err := readMessageMeta(r, size, pos, -1)
		if err != nil {
			return fmt.Errorf("message at offset %d: %w", pos, err)
		}
		if eos {
			if ended && pos == size {
				return fmt.Errorf("%w: no end-of-stream marker after %d bytes: the stream is cut short", errFlatbuffer, size)
			}
			return nil
		}
		m, err := verifyMessageFB(meta)
		if err != nil {
			return fmt.Errorf("message at offset %d: %w", pos, err)
		}
		if m.bodyLength < 0 || m.bodyLength > size-next {
			return nil // arrow-go reports the truncated body
		}
		if err := verifyBody(r, size, next, m); err != nil {
			return fmt.Errorf("message at offset %d: %w", pos, err)
		}
		pos = next + m.bodyLength
	}
}
