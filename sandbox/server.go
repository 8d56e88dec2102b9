package sandbox

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"strconv"
)

// maxBodyBytes bounds a request body. DynamoDB control-plane requests are a
// few kilobytes at most.
const maxBodyBytes = 1 << 20

// buffer holds one request's body and its response; pooled per Fake.
type buffer struct {
	body []byte
	out  jsonWriter
}

// ServeHTTP answers STS and DynamoDB requests: those with an X-Amz-Target
// header go to DynamoDB, all others to STS.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	buf := f.bufs.Get().(*buffer)
	defer f.bufs.Put(buf)
	buf.out.reset()

	body, tooLarge, err := readBody(r, buf.body[:0])
	buf.body = body
	target := r.Header.Get("X-Amz-Target")
	switch {
	case err != nil:
		// The client went away or sent a broken body; nothing useful can
		// be written back.
		http.Error(w, "reading request body: "+err.Error(), http.StatusBadRequest)
	case target != "":
		f.serveDynamoDB(w, r, target, body, tooLarge, &buf.out)
	default:
		f.serveSTS(w, r, body, tooLarge, &buf.out)
	}
}

// readBody reads the whole body into dst, or up to maxBodyBytes; tooLarge
// reports that it was cut short.
func readBody(r *http.Request, dst []byte) (body []byte, tooLarge bool, err error) {
	if r.ContentLength > maxBodyBytes {
		return dst, true, nil
	}
	for {
		if len(dst) > maxBodyBytes {
			return dst, true, nil
		}
		if cap(dst)-len(dst) < 512 {
			dst = slices.Grow(dst, 512)
		}
		n, err := r.Body.Read(dst[len(dst):cap(dst)])
		dst = dst[:len(dst)+n]
		if err == io.EOF {
			return dst, len(dst) > maxBodyBytes, nil
		}
		if err != nil {
			return dst, false, err
		}
	}
}

// newRequestID returns a request ID of the shape AWS uses, a UUID.
func newRequestID() string { return newUUID() }

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return formatUUID(b)
}

// nameUUID is the UUID that name always gives: the fake's stand-in for an
// id that AWS keeps for a name, such as the KMS key an alias points to.
func nameUUID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return formatUUID([16]byte(sum[:16]))
}

func formatUUID(b [16]byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// writeResponse writes a complete response with the headers AWS services
// send; crc32, when non-empty, is DynamoDB's X-Amz-Crc32 of the body, which
// the SDK verifies.
func writeResponse(w http.ResponseWriter, status int, contentType, requestID, crc32 string, body []byte) {
	h := w.Header()
	v := []string{contentType, requestID, strconv.Itoa(len(body)), crc32} // one allocation for all values
	h["Content-Type"] = v[0:1:1]
	h["X-Amzn-Requestid"] = v[1:2:2]
	h["Content-Length"] = v[2:3:3]
	if crc32 != "" {
		h["X-Amz-Crc32"] = v[3:4:4]
	}
	w.WriteHeader(status)
	_, _ = w.Write(body) // a failed write means the client went away
}
