package tracing

import (
	"context"
	"net/http/httptest"
	"testing"

	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// TestOTLPClientSendsABatchWithAStringNotUTF8: one span of a batch holds
// a string that is not UTF-8 (a caller's User-Agent over HTTP, which
// takes bytes over 0x7f), which protobuf refuses to encode. The batch is
// sent all the same, that string mended, not lost with every other
// caller's span in it.
func TestOTLPClientSendsABatchWithAStringNotUTF8(t *testing.T) {
	f := &fakeCollector{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := newOTLPClient(envOf(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL}))
	if err != nil {
		t.Fatal(err)
	}
	str := func(k, v string) *commonpb.KeyValue {
		return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
	}
	spans := []*tracepb.ResourceSpans{{
		Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("team", "a\xffb")}},
		ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{
			{Name: "GET", Attributes: []*commonpb.KeyValue{str("user_agent.original", "curl/8")}},
			{Name: "GET", Attributes: []*commonpb.KeyValue{str("user_agent.original", "bad\xffagent"), str("url.path\xfe", "/v1")}},
		}}},
	}}
	if err := c.UploadTraces(context.Background(), spans); err != nil {
		t.Fatalf("a batch with a string not UTF-8: %v; want it sent", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.bodies) != 1 {
		t.Fatalf("%d batches received; want 1", len(f.bodies))
	}
	got := f.bodies[0].ResourceSpans[0]
	if v := got.Resource.Attributes[0].Value.GetStringValue(); v != "a\uFFFDb" {
		t.Errorf("resource attribute %q; want a\uFFFDb", v)
	}
	bad := got.ScopeSpans[0].Spans[1]
	if v := bad.Attributes[0].Value.GetStringValue(); v != "bad\uFFFDagent" {
		t.Errorf("user_agent.original %q; want bad\uFFFDagent", v)
	}
	if k := bad.Attributes[1].Key; k != "url.path\uFFFD" {
		t.Errorf("key %q; want url.path\uFFFD", k)
	}
	if v := got.ScopeSpans[0].Spans[0].Attributes[0].Value.GetStringValue(); v != "curl/8" {
		t.Errorf("the other span's attribute %q; want it as it was", v)
	}
}
