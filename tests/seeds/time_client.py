# 001 §五 四 ntp客户端. Usage: time_client.py HOST PORT
from socket import *
import sys
ip_port=(sys.argv[1], int(sys.argv[2]))
bufsize=1024

tcp_client=socket(AF_INET,SOCK_DGRAM)



while True:
    try:
        msg=input('请输入时间格式(例%Y %m %d)>>: ').strip()
    except EOFError:  # sockit: stdin ended, the test is over
        break
    tcp_client.sendto(msg.encode('utf-8'),ip_port)

    data=tcp_client.recv(bufsize)

    print(data.decode('utf-8'))

tcp_client.close()
