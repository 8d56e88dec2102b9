package sandbox

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// jsonWriter appends JSON to a reusable buffer. Responses are written by hand
// rather than with encoding/json because the fake is a benchmark target: this
// allocates nothing once the buffer has grown, and the field order follows
// the DynamoDB API reference.
//
// first tracks whether the innermost open object or array is still empty;
// closing a container always leaves its parent non-empty, so one flag is
// enough.
type jsonWriter struct {
	b     []byte
	first bool
}

func (w *jsonWriter) reset() {
	w.b = w.b[:0]
	w.first = true
}

func (w *jsonWriter) bytes() []byte { return w.b }

func (w *jsonWriter) comma() {
	if !w.first {
		w.b = append(w.b, ',')
	}
	w.first = false
}

func (w *jsonWriter) key(k string) {
	w.comma()
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
	w.first = true // the value that follows needs no comma
}

// open starts an object: the top-level one, or an element of an array.
func (w *jsonWriter) open() {
	w.comma()
	w.b = append(w.b, '{')
	w.first = true
}

func (w *jsonWriter) close() {
	w.b = append(w.b, '}')
	w.first = false
}

func (w *jsonWriter) object(k string) {
	w.key(k)
	w.b = append(w.b, '{')
	w.first = true
}

func (w *jsonWriter) array(k string) {
	w.key(k)
	w.b = append(w.b, '[')
	w.first = true
}

func (w *jsonWriter) closeArray() {
	w.b = append(w.b, ']')
	w.first = false
}

func (w *jsonWriter) str(k, v string) {
	w.key(k)
	w.b = appendJSONString(w.b, v)
	w.first = false
}

// strOmit writes a string member only when it is not empty.
func (w *jsonWriter) strOmit(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

// strElem writes a string array element.
func (w *jsonWriter) strElem(v string) {
	w.comma()
	w.b = appendJSONString(w.b, v)
}

func (w *jsonWriter) int(k string, v int64) {
	w.key(k)
	w.b = strconv.AppendInt(w.b, v, 10)
	w.first = false
}

func (w *jsonWriter) bool(k string, v bool) {
	w.key(k)
	w.b = strconv.AppendBool(w.b, v)
	w.first = false
}

// time writes t as DynamoDB does: epoch seconds as a number with a
// millisecond fraction.
func (w *jsonWriter) time(k string, t time.Time) {
	w.key(k)
	ms := t.UnixMilli()
	w.b = strconv.AppendInt(w.b, ms/1000, 10)
	frac := ms % 1000
	w.b = append(w.b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	w.first = false
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping what JSON requires
// and replacing invalid UTF-8.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
