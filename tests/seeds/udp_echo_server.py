# 001 §五 二 udp套接字简单示例, server.py. Binds 127.0.0.1 port 0 and prints the port.
from socket import *

server = socket(AF_INET,SOCK_DGRAM)
server.bind(('127.0.0.1',0))
print(server.getsockname()[1], flush=True)  # sockit: tell the test the port

while True: ##通信循环
    msg,client_addr = server.recvfrom(1024)
    print(msg,client_addr)
    server.sendto(msg.upper(),client_addr)
