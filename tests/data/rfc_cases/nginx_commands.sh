#!/bin/bash
# The curl commands of nginx_h1_h2.pcap, run in namespace pw_c (10.77.0.1) against nginx (nginx.conf) in pw_s (10.77.0.2); www/b70k holds 70,000 bytes.
C="ip netns exec pw_c curl -s --http2-prior-knowledge -o /dev/null -w %{http_code}:%{size_download}:%{size_upload}\n"
$C http://10.77.0.2:8080/index.html -o /dev/null http://10.77.0.2:8080/b70k -o /dev/null http://10.77.0.2:8080/missing -o /dev/null http://10.77.0.2:8080/nc
$C -X POST --data-binary @/tmp/nginx-rfc/www/b70k http://10.77.0.2:8080/echo
$C -I http://10.77.0.2:8080/index.html
ip netns exec pw_c curl -s --http2 -o /dev/null -w '%{http_code}:%{size_download}\n' http://10.77.0.2:8080/redir
C1="ip netns exec pw_c curl -s -o /dev/null -w %{http_code}:%{size_download}\n"
$C1 --compressed http://10.77.0.2:8081/b70k -o /dev/null --compressed http://10.77.0.2:8081/index.html
$C1 -X POST --data-binary @/tmp/nginx-rfc/www/b70k -H 'Transfer-Encoding: chunked' http://10.77.0.2:8081/echo
