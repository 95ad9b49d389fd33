# Mosquitto exactly as the tests run it: Debian bookworm's 2.0.11 package
# (its paths, its `mosquitto` user), configured by the repo's mosquitto.conf.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends mosquitto \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o root -g mosquitto -m 0750 /etc/mosquitto/carewatch \
    && install -o root -g mosquitto -m 0640 /dev/null /etc/mosquitto/carewatch/passwd \
    && install -d -o mosquitto -g mosquitto /var/lib/mosquitto /var/log/mosquitto /run/mosquitto
EXPOSE 1884 8883
CMD ["/usr/sbin/mosquitto", "-c", "/etc/mosquitto/mosquitto.conf"]
