package egress

import (
	"bufio"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// ConnectHelper is the body of ssh's ProxyCommand (Config.SSHProxyCommand, run
// as `agentexec __egress_connect %h %p`): it opens a CONNECT tunnel to host:port
// through the proxy of proxyURL (the launch's HTTPS_PROXY, credential
// included) and copies stdin to it and it to stdout until either side ends.
func ConnectHelper(proxyURL, host, port string, stdin io.Reader, stdout io.Writer) error {
	u, err := url.Parse(proxyURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("egress connect: proxy URL %q: want http://ID:TOKEN@HOST:PORT (is HTTPS_PROXY set?)", redact(proxyURL))
	}
	c, err := net.Dial("tcp", u.Host)
	if err != nil {
		return fmt.Errorf("egress connect: %w", err)
	}
	defer c.Close()
	target := net.JoinHostPort(host, port)
	req := "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n"
	if u.User != nil {
		pw, _ := u.User.Password()
		req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u.User.Username()+":"+pw)) + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return fmt.Errorf("egress connect: %w", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("egress connect: %w", err)
	}
	defer resp.Body.Close() // empty after a 2xx to CONNECT: the tunnel is br
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("egress connect %s: %s: %s", target, resp.Status, strings.TrimSpace(string(msg)))
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(c, stdin)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		done <- err
	}()
	_, err = io.Copy(stdout, br)
	return err
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(an unparseable URL)"
	}
	if u.User == nil {
		return s
	}
	return u.Redacted()
}
