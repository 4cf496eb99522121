# 001 §五 二 udp套接字简单示例, client.py. Usage: udp_echo_client.py HOST PORT
from socket import *
import sys

client = socket(AF_INET,SOCK_DGRAM)
# udp没有连接

while True:
    try:
        msg = input('>>:').strip() ##发送空不会报错
    except EOFError:  # sockit: stdin ended, the test is over
        break

    client.sendto(msg.encode('utf-8'),(sys.argv[1], int(sys.argv[2])))

    msg,server_addr = client.recvfrom(1024)
    print(msg)
