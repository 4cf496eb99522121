# 001 §五 四 ntp服务端. Binds 127.0.0.1 port 0 and prints the port.
from socket import *
from time import strftime

ip_port=('127.0.0.1',0)
bufsize=1024

tcp_server=socket(AF_INET,SOCK_DGRAM)
tcp_server.bind(ip_port)
print(tcp_server.getsockname()[1], flush=True)  # sockit: tell the test the port

while True:
    msg,addr=tcp_server.recvfrom(bufsize)
    print('===>',msg)

    if not msg:
        time_fmt='%Y-%m-%d %X'
    else:
        time_fmt=msg.decode('utf-8')
    back_msg=strftime(time_fmt)

    tcp_server.sendto(back_msg.encode('utf-8'),addr)

tcp_server.close()
