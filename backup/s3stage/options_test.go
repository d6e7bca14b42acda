package s3stage

import (
	"strings"
	"testing"
)

// clearEnv empties every variable the options read, for the calling test.
func clearEnv(tb testing.TB) {
	tb.Helper()
	for _, name := range []string{"AWS_ENDPOINT_URL", "MINIO_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
		"AWS_SESSION_TOKEN", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "AWS_REGION",
		"AWS_DEFAULT_REGION"} {
		tb.Setenv(name, "")
	}
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		options Options
		want    connection
		wantErr string
	}{
		{
			name: "defaults",
			want: connection{host: "s3.amazonaws.com", secure: true, partSize: 8 << 20, parallel: 4},
		},
		{
			name:    "explicit",
			env:     map[string]string{"AWS_ENDPOINT_URL": "https://ignored", "AWS_ACCESS_KEY_ID": "ignored", "AWS_REGION": "ignored"},
			options: Options{Endpoint: "minio:9000", AccessKey: "ak", SecretKey: "sk", Region: "eu-west-1", PartSize: 16 << 20, Parallel: 2, CreateBucket: true},
			want:    connection{host: "minio:9000", accessKey: "ak", secretKey: "sk", region: "eu-west-1", partSize: 16 << 20, parallel: 2, createBucket: true},
		},
		{
			name:    "host and port with Secure",
			options: Options{Endpoint: "minio:9000", Secure: true},
			want:    connection{host: "minio:9000", secure: true, partSize: 8 << 20, parallel: 4},
		},
		{
			name:    "http URL overrides Secure",
			options: Options{Endpoint: "http://minio:9000/", Secure: true},
			want:    connection{host: "minio:9000", partSize: 8 << 20, parallel: 4},
		},
		{
			name: "AWS environment",
			env: map[string]string{"AWS_ENDPOINT_URL": "https://s3.example", "MINIO_ENDPOINT": "ignored:1",
				"AWS_ACCESS_KEY_ID": "aws-ak", "AWS_SECRET_ACCESS_KEY": "aws-sk", "AWS_SESSION_TOKEN": "token",
				"MINIO_ROOT_USER": "ignored", "AWS_DEFAULT_REGION": "us-west-2"},
			want: connection{host: "s3.example", secure: true, accessKey: "aws-ak", secretKey: "aws-sk", sessionToken: "token",
				region: "us-west-2", partSize: 8 << 20, parallel: 4},
		},
		{
			name: "MinIO root environment",
			env: map[string]string{"MINIO_ENDPOINT": "127.0.0.1:9000", "MINIO_ROOT_USER": "root", "MINIO_ROOT_PASSWORD": "rootpw",
				"MINIO_ACCESS_KEY": "ignored", "AWS_REGION": "r1", "AWS_DEFAULT_REGION": "ignored"},
			want: connection{host: "127.0.0.1:9000", accessKey: "root", secretKey: "rootpw", region: "r1", partSize: 8 << 20, parallel: 4},
		},
		{
			name: "MinIO legacy environment",
			env:  map[string]string{"MINIO_ACCESS_KEY": "old", "MINIO_SECRET_KEY": "oldpw"},
			want: connection{host: "s3.amazonaws.com", secure: true, accessKey: "old", secretKey: "oldpw", partSize: 8 << 20, parallel: 4},
		},
		{name: "part size too small", options: Options{PartSize: 5<<20 - 1}, wantErr: "below the S3 minimum"},
		{name: "negative parallel", options: Options{Parallel: -1}, wantErr: "want at least 1"},
		{name: "unknown scheme", options: Options{Endpoint: "ftp://host"}, wantErr: `scheme "ftp"`},
		{name: "URL with a path", options: Options{Endpoint: "https://host/bucket"}, wantErr: "only a scheme, a host and a port"},
		{name: "host with a path", options: Options{Endpoint: "host:9000/bucket"}, wantErr: "want host:port"},
		{name: "URL without host", options: Options{Endpoint: "https://"}, wantErr: "only a scheme"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			got, err := tt.options.resolve()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("resolve: %+v, %v; want an error saying %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("resolve = %+v, %v\nwant %+v", got, err, tt.want)
			}
		})
	}
}

func TestEndpointURL(t *testing.T) {
	clearEnv(t)
	for _, tt := range []struct {
		options Options
		want    string
	}{
		{Options{}, "https://s3.amazonaws.com"},
		{Options{Endpoint: "h:1"}, "http://h:1"},
		{Options{Endpoint: "h:1", Secure: true}, "https://h:1"},
		{Options{Endpoint: "http://h:1"}, "http://h:1"},
	} {
		if got, err := tt.options.EndpointURL(); err != nil || got != tt.want {
			t.Errorf("%+v: %q, %v; want %q", tt.options, got, err, tt.want)
		}
	}
}
